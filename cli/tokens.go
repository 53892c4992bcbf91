package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
)

// `tether tokens` manages API tokens: credentials for scripts and CI that
// work wherever a session token does (TETHER_SESSION_TOKEN, the
// Tether-Session-Token header, Authorization: Bearer), with a name and an
// expiry, until deleted.

func (r *root) tokensCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "Manage API tokens for scripts and CI",
		Long: "Manage API tokens: credentials for scripts and CI, used as TETHER_SESSION_TOKEN (or in the\n" +
			tether.SessionTokenHeader + " header, or as Authorization: Bearer). A token is shown once, when it\n" +
			"is created; it acts as you until it expires or is deleted, and stops working while your\n" +
			"account is suspended. Signing out everywhere and changing your password leave tokens alone:\n" +
			"delete them here.",
	}
	cmd.AddCommand(r.tokensCreateCommand(), r.tokensListCommand(), r.tokensDeleteCommand())
	return cmd
}

func (r *root) tokensCreateCommand() *cobra.Command {
	var name, lifetime, format string
	create := &cobra.Command{
		Use:   "create [--name NAME] [--lifetime DURATION]",
		Short: "Create an API token and print it (once)",
		Long: "Create an API token and print its secret on standard output, alone, so that scripts can\n" +
			"capture it:\n\n" +
			"  TOKEN=$(tether tokens create --name ci --lifetime 90d)\n\n" +
			"The server never shows it again; it keeps only a hash.",
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			var req tether.CreateAPITokenRequest
			req.Name = name
			if lifetime != "" {
				d, err := parseLifetime(lifetime)
				if err != nil {
					return err
				}
				req.Lifetime = tether.Duration(d)
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			t, err := c.CreateAPIToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(r.env.Stdout, t)
			}
			fmt.Fprintf(r.env.Stderr, "Created API token %s, valid until %s. It is shown only this once:\n",
				t.Name, t.ExpiresAt.Local().Format("2006-01-02 15:04"))
			fmt.Fprintln(r.env.Stdout, t.Token)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&name, "name", "", "name of the token, to tell it apart in tokens ls (default: made up)")
	f.StringVar(&lifetime, "lifetime", "", "how long the token works, such as 90d or 12h (default: 30d, or the server's --max-token-lifetime if shorter)")
	outputFlag(create, &format)
	return create
}

func (r *root) tokensListCommand() *cobra.Command {
	var user string
	list := listingCommand(r, &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List your API tokens: name, created, last used, expires",
		Args:    cobra.NoArgs,
	}, listing[tether.APIToken]{
		fetch: func(ctx context.Context, c *client.Client) ([]tether.APIToken, error) {
			return c.APITokens(ctx, user)
		},
		header: "NAME\tID\tCREATED\tLAST USED\tEXPIRES",
		row: func(t tether.APIToken, now time.Time) []string {
			expires := t.ExpiresAt.Local().Format("2006-01-02 15:04")
			if !now.Before(t.ExpiresAt) {
				expires += " (expired)"
			}
			return []string{t.Name, t.ID.String(), t.CreatedAt.Local().Format("2006-01-02"), ago(t.LastUsedAt, now), expires}
		},
	})
	list.Flags().StringVar(&user, "user", "me", "whose tokens (admins may list anyone's)")
	return list
}

func (r *root) tokensDeleteCommand() *cobra.Command {
	var user string
	del := &cobra.Command{
		Use:     "delete NAME|ID",
		Aliases: []string{"rm"},
		Short:   "Delete an API token: it stops working, and connections opened with it end, at once",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			if err := c.DeleteAPIToken(cmd.Context(), user, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Deleted API token %s.\n", args[0])
			return nil
		},
	}
	del.Flags().StringVar(&user, "user", "me", "whose token (admins may delete anyone's)")
	return del
}

// parseLifetime reads a token lifetime: whole days ("90d") or a Go
// duration ("12h", "1h30m").
func parseLifetime(s string) (time.Duration, error) {
	bad := fmt.Errorf("--lifetime %q: give days (90d) or hours and minutes (12h, 1h30m)", s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}
