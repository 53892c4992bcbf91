package cli

import (
	"errors"
	"runtime"

	"github.com/spf13/cobra"
)

// UnsupportedCommand stands in for a command that this operating system's
// build leaves out (the agent and the server on Windows), so that running
// it says why rather than "unknown command", and `tether --help` still
// lists it. It takes any arguments and flags, --help included, and fails
// with why.
func UnsupportedCommand(use, short, why string) *cobra.Command {
	return &cobra.Command{
		Use:                use,
		Short:              short + " (not on " + runtime.GOOS + ")",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New(why)
		},
	}
}
