// Command tether is Tether's single binary: the server, the workspace agent
// and the user's CLI.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tetherdev/tether/cli"
	"github.com/tetherdev/tether/servercmd"
	"github.com/tetherdev/tether/wsproxycmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := cli.OSEnv()
	root := cli.Root(env)
	root.AddCommand(servercmd.Command(env.Stdout, env.Stderr, cli.Version))
	for _, c := range root.Commands() {
		if c.Name() == "wsproxy" {
			c.AddCommand(wsproxycmd.Command(env.Stdout, env.Stderr, cli.Version))
		}
	}
	code := cli.Run(ctx, root, env, os.Args[1:])
	stop()
	os.Exit(code)
}
