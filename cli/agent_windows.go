package cli

import "github.com/spf13/cobra"

// agentCommand stands in for `tether agent`, which the Windows build leaves
// out. The agent's sessions are built on POSIX pseudo-terminals, process
// groups and signals; a Windows agent would need its own (ConPTY, job
// objects, console control events) and a Windows machine in CI to keep it
// working. Until then a workspace runs the agent on Linux or macOS.
func agentCommand(*Env) *cobra.Command {
	return UnsupportedCommand("agent", "Run a workspace's agent (inside the workspace)",
		"the agent does not run on Windows yet: run it inside the workspace on Linux or macOS (on a Windows machine, in WSL)")
}
