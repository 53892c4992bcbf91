//go:build !windows

package main

import (
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli"
	"github.com/tetherdev/tether/servercmd"
	"github.com/tetherdev/tether/wsproxycmd"
)

// serverCommand is `tether server`, from package servercmd so that package cli
// never links the server.
func serverCommand(env *cli.Env) *cobra.Command {
	return servercmd.Command(env.Stdout, env.Stderr, cli.BuildVersion().Version)
}

// wsproxyServerCommand is `tether wsproxy server`, from package wsproxycmd
// for the same reason.
func wsproxyServerCommand(env *cli.Env) *cobra.Command {
	return wsproxycmd.Command(env.Stdout, env.Stderr, cli.BuildVersion().Version)
}
