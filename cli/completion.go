package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli/option"
)

func completionCommand(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script (workspace names are completed from the server)",
		Long: "Print the script that lets your shell complete tether's commands, flags and workspace names.\n\n" +
			"  bash:        source <(tether completion bash)        (in ~/.bashrc)\n" +
			"  zsh:         source <(tether completion zsh)         (in ~/.zshrc, after compinit)\n" +
			"  fish:        tether completion fish > ~/.config/fish/completions/tether.fish\n" +
			"  PowerShell:  tether completion powershell | Out-String | Invoke-Expression",
		Args:                  cobra.ExactArgs(1),
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), env.Stdout
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(w)
			}
			return fmt.Errorf("no completion for shell %q: choose bash, zsh, fish or powershell", args[0])
		},
	}
}

// completeTimeout bounds asking the server for workspace names: the shell
// waits for the answer while the user waits for the shell.
const completeTimeout = 2 * time.Second

// completeWorkspace completes a command's first argument with the names
// of the user's workspaces (OWNER/NAME for everyone's, when an admin has
// typed a slash). Any failure completes nothing: a shell has nowhere to
// show an error.
func (r *root) completeWorkspace(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	// Completion runs no pre-run hooks, so apply the environment here.
	if option.Apply(cmd, r.env.Getenv) != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, err := r.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
	defer cancel()
	everyone := strings.Contains(toComplete, "/")
	list, err := c.Workspaces(ctx, !everyone)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, w := range list {
		name := w.Name
		if everyone {
			name = w.Owner + "/" + w.Name
		}
		if strings.HasPrefix(name, toComplete) {
			names = append(names, name+"\t"+w.AgentStatus)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
