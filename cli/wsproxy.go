package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
)

// wsproxyCommand is `tether wsproxy`: admins register, list and delete
// workspace proxies. `tether wsproxy server`, which runs one, is wired in
// by cmd/tether (package wsproxycmd), so that the CLI never links the
// server.
func (r *root) wsproxyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wsproxy",
		Short: "Manage workspace proxies (admins): web terminals, apps and a relay region near a group of users",
	}

	var display, icon, createFormat string
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Register a workspace proxy and print its token (shown only this once)",
		Args:    cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(createFormat) },
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			resp, err := c.CreateWorkspaceProxy(cmd.Context(), tether.CreateWorkspaceProxyRequest{Name: args[0], DisplayName: display, Icon: icon})
			if err != nil {
				return err
			}
			return r.printProxyToken(resp, createFormat, c.URL.String(), "Created")
		},
	}
	create.Flags().StringVar(&display, "display-name", "", "name shown to users (default: NAME)")
	create.Flags().StringVar(&icon, "icon", "", "URL or emoji shown beside the name in the dashboard")
	outputFlag(create, &createFormat)

	list := listingCommand(r, &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List workspace proxies with their health",
		Args:    cobra.NoArgs,
	}, listing[tether.WorkspaceProxy]{
		fetch: func(ctx context.Context, c *client.Client) ([]tether.WorkspaceProxy, error) {
			return c.WorkspaceProxies(ctx)
		},
		header: "NAME\tURL\tREGION\tHEALTHY\tVERSION\tLAST HEARTBEAT",
		row: func(p tether.WorkspaceProxy, now time.Time) []string {
			u := p.URL
			if u == "" {
				u = "(never started)"
			}
			healthy := "no"
			if p.Healthy {
				healthy = "yes"
			}
			version := p.Version
			if version == "" {
				version = "-"
			}
			return []string{p.Name, u, strconv.Itoa(p.RegionID), healthy, version, ago(p.LastHeartbeat, now)}
		},
	})

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a workspace proxy: its token stops working and it leaves the DERP map",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			if err := c.DeleteWorkspaceProxy(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Deleted workspace proxy %s.\n", args[0])
			return nil
		},
	}

	var regenFormat string
	regen := &cobra.Command{
		Use:     "regenerate-token NAME",
		Short:   "Give a workspace proxy a new token: the old one stops working at once",
		Args:    cobra.ExactArgs(1),
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(regenFormat) },
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			resp, err := c.RegenerateWorkspaceProxyToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return r.printProxyToken(resp, regenFormat, c.URL.String(), "New token for")
		},
	}
	outputFlag(regen, &regenFormat)

	cmd.AddCommand(create, list, del, regen)
	return cmd
}

func (r *root) printProxyToken(resp tether.WorkspaceProxyTokenResponse, format, primary, verb string) error {
	if format == "json" {
		return writeJSON(r.env.Stdout, resp)
	}
	fmt.Fprintf(r.env.Stdout, "%s workspace proxy %s. Its token (shown only this once):\n\n  %s\n\n", verb, resp.Proxy.Name, resp.Token)
	fmt.Fprintf(r.env.Stdout, "Run it where its users are:\n\n  TETHER_PROXY_TOKEN=%s tether wsproxy server \\\n    --primary-access-url %s --access-url https://PROXY.example.com --http-address 0.0.0.0:443\n",
		resp.Token, primary)
	return nil
}
