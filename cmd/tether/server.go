//go:build !windows

package main

import (
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli"
	"github.com/tetherdev/tether/serve"
)

// serverCommand is `tether server`, from package serve so that package cli
// never links the server.
func serverCommand(env *cli.Env) *cobra.Command {
	return serve.Command(env.Stdout, env.Stderr, cli.Version)
}
