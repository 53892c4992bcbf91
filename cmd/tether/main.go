// Command tether is Tether's single binary: the server, the workspace agent
// and the user's CLI.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli"
)

func main() {
	ctx, stop := cli.NotifyContext(context.Background())
	env := cli.OSEnv()
	code := cli.Run(ctx, command(env), env, os.Args[1:])
	stop()
	os.Exit(code)
}

// command is the whole `tether` command tree: the CLI's, the server and
// the workspace proxy's server.
func command(env *cli.Env) *cobra.Command {
	root := cli.Root(env)
	root.AddCommand(serverCommand(env))
	for _, c := range root.Commands() {
		if c.Name() == "wsproxy" {
			c.AddCommand(wsproxyServerCommand(env))
		}
	}
	return root
}
