package main

import (
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli"
)

// serverCommand stands in for `tether server`, which the Windows build
// leaves out: the server (and the agent that --dev runs in it) needs
// pseudo-terminals, process groups and POSIX signals, and no Windows
// machine tests it. Leaving it out also keeps the store and the server's
// dependencies out of the laptop binary.
func serverCommand(*cli.Env) *cobra.Command {
	return cli.UnsupportedCommand("server", "Run the Tether control plane",
		"tether server does not run on Windows yet: run it on Linux or macOS (or in WSL)")
}

// wsproxyServerCommand stands in for `tether wsproxy server`, left out of
// the Windows build as the server is.
func wsproxyServerCommand(*cli.Env) *cobra.Command {
	return cli.UnsupportedCommand("server", "Run a workspace proxy",
		"tether wsproxy server does not run on Windows yet: run it on Linux or macOS")
}
