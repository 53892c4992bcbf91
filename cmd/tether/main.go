// Command tether is Tether's single binary: the server, the workspace agent
// and the user's CLI.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli"
	"github.com/tetherdev/tether/servercmd"
	"github.com/tetherdev/tether/wsproxycmd"
)

func main() {
	ctx, stop := cli.NotifyContext(context.Background())
	env := cli.OSEnv()
	code := cli.Run(ctx, command(env), env, os.Args[1:])
	stop()
	os.Exit(code)
}

// command is the whole `tether` command tree: the CLI's, and the server.
func command(env *cli.Env) *cobra.Command {
	root := cli.Root(env)
	root.AddCommand(servercmd.Command(env.Stdout, env.Stderr, cli.BuildVersion().Version))
	for _, c := range root.Commands() {
		if c.Name() == "wsproxy" {
			c.AddCommand(wsproxycmd.Command(env.Stdout, env.Stderr, cli.BuildVersion().Version))
		}
	}
	return root
}
