package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
)

// splitWorkspace parses "NAME" (the caller's own) or "OWNER/NAME".
func splitWorkspace(arg string) (owner, name string, err error) {
	owner, name = "me", arg
	if o, n, ok := strings.Cut(arg, "/"); ok {
		owner, name = o, n
	}
	if err := tether.ValidateName("workspace", name); err != nil {
		return "", "", err
	}
	return owner, name, nil
}

func (r *root) createCommand() *cobra.Command {
	var template, format string
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a workspace and print the command that runs its agent",
		Args:    cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := tether.ValidateName("workspace", args[0]); err != nil {
				return err
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateWorkspace(cmd.Context(), tether.CreateWorkspaceRequest{Name: args[0], Template: template})
			if err != nil {
				return err
			}
			out := createOutput(resp)
			if format == "json" {
				return writeJSON(r.env.Stdout, out)
			}
			fmt.Fprintf(r.env.Stdout, "Created workspace %s.\n\n", resp.Workspace.Name)
			if out.InstallCommand != "" {
				fmt.Fprintf(r.env.Stdout, "Install and start its agent inside the workspace (the token is shown only this once):\n\n  %s\n\n", out.InstallCommand)
				fmt.Fprintf(r.env.Stdout, "or, where tether is installed already:\n\n  %s\n\n", out.AgentCommand)
			} else {
				fmt.Fprintf(r.env.Stdout, "Run its agent inside the workspace (the token is shown only this once):\n\n  %s\n\n", out.AgentCommand)
			}
			fmt.Fprintf(r.env.Stdout, "Then connect with `tether ssh %s`.\n", resp.Workspace.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&template, "template", "t", "", "template to create the workspace from")
	outputFlag(cmd, &format)
	return cmd
}

// createOutput is what `tether create` prints about a new workspace.
func createOutput(resp tether.CreateWorkspaceResponse) tether.CreateWorkspaceOutput {
	return tether.CreateWorkspaceOutput{
		Name:           resp.Workspace.Name,
		Owner:          resp.Workspace.Owner,
		AgentToken:     resp.AgentToken,
		AgentURL:       resp.AgentURL,
		InstallCommand: resp.InstallCommand,
		AgentCommand:   fmt.Sprintf("TETHER_AGENT_TOKEN=%s tether agent --url %s", resp.AgentToken, resp.AgentURL),
	}
}

func (r *root) listCommand() *cobra.Command {
	return listingCommand(r, &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List workspaces with their agents' status",
		Args:    cobra.NoArgs,
	}, listing[tether.Workspace]{
		fetch: func(ctx context.Context, c *client.Client) ([]tether.Workspace, error) {
			return c.Workspaces(ctx, false)
		},
		empty:  "No workspaces yet: create one with `tether create NAME`.",
		header: "WORKSPACE\tTEMPLATE\tAGENT\tLAST SEEN\tPATH\tSTARTUP",
		row: func(w tether.Workspace, now time.Time) []string {
			tpl := w.Template
			if tpl == "" {
				tpl = "-"
			}
			return []string{w.Owner + "/" + w.Name, tpl, w.AgentStatus, ago(w.LastSeen, now), describePath(w.Connection), describeStartup(w.StartupScript)}
		},
	})
}

func (r *root) deleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a workspace (its agent is disconnected and its token revoked)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			owner, name, err := splitWorkspace(args[0])
			if err != nil {
				return err
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			if !yes {
				p := newPrompter(cmd.Context(), r.env)
				if !p.interactive() {
					return fmt.Errorf("refusing to delete %s without confirmation: pass --yes", args[0])
				}
				answer, err := p.ask(fmt.Sprintf("Delete workspace %s? Type its name to confirm", args[0]), "")
				if err != nil {
					return err
				}
				if answer != name {
					return fmt.Errorf("not deleted: %q is not %q", answer, name)
				}
			}
			if err := c.DeleteWorkspace(cmd.Context(), owner, name); err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Deleted workspace %s.\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// describePath renders a workspace's tunnels for `tether list`.
func describePath(c *tether.WorkspaceConnection) string {
	switch {
	case c == nil:
		return "-"
	case c.Path == tether.PathDirect:
		return fmt.Sprintf("direct (%d active)", c.Peers)
	case c.Path == tether.PathRelay:
		return fmt.Sprintf("relayed via UDP relay %s (%d active)", c.Endpoint, c.Peers)
	}
	return fmt.Sprintf("relayed via %s (%d active)", c.DERPRegion, c.Peers)
}

// describeStartup renders how a workspace's startup script went, for
// `tether list`.
func describeStartup(st *tether.StartupScriptStatus) string {
	switch {
	case st == nil:
		return "-"
	case st.Status == tether.StartupScriptFailed && st.ExitCode != nil && *st.ExitCode >= 0:
		return fmt.Sprintf("failed (exit %d)", *st.ExitCode)
	case st.Status == tether.StartupScriptTimedOut:
		return "timed out"
	}
	return st.Status
}
