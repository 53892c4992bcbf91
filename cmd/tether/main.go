// Command tether is Tether's single binary: the server, the workspace agent
// and the user's CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherdev/tether/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := cli.OSEnv()
	root := cli.Root(env)
	root.AddCommand(serverCommand(env))
	code := cli.Run(ctx, root, env, os.Args[1:])
	stop()
	os.Exit(code)
}
