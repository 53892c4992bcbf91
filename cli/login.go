package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/config"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
)

func (r *root) loginCommand() *cobra.Command {
	var first tether.CreateFirstUserRequest
	var username, password string
	cmd := &cobra.Command{
		Use:   "login [URL]",
		Short: "Sign in to a Tether server (or create its first admin)",
		Long: "Sign in to a Tether server and save the session for later commands.\n\n" +
			"On a new server, the first login creates the first admin: pass --first-user-username,\n" +
			"--first-user-email and --first-user-password, or answer the prompts.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := config.Dir(r.configDir)
			rawURL := r.url
			if len(args) == 1 {
				rawURL = args[0]
			}
			if rawURL == "" {
				saved, err := dir.URL()
				if err != nil {
					return err
				}
				rawURL = saved
			}
			c, err := client.New(rawURL)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			exists, err := c.HasFirstUser(ctx)
			if err != nil {
				return loginError(c, rawURL, err)
			}
			p := newPrompter(ctx, r.env)
			var resp tether.LoginResponse
			if !exists {
				if first.Username == "" || first.Email == "" || first.Password == "" {
					if !p.interactive() {
						return errors.New("this server has no users yet: pass --first-user-username, --first-user-email and --first-user-password to create the first admin")
					}
					fmt.Fprintf(r.env.Stderr, "%s has no users yet. Create the first admin:\n", c.URL)
					if err := askFirstUser(p, &first); err != nil {
						return err
					}
				}
				resp, err = c.CreateFirstUser(ctx, first)
				if err != nil {
					return err
				}
			} else {
				if username == "" || password == "" {
					if !p.interactive() {
						return errors.New("pass --username and --password (stdin is not a terminal, so the CLI cannot ask)")
					}
					if username == "" {
						if username, err = p.ask("Username or email", ""); err != nil {
							return err
						}
					}
					if password == "" {
						if password, err = p.askSecret("Password"); err != nil {
							return err
						}
					}
				}
				resp, err = c.Login(ctx, tether.LoginRequest{Login: username, Password: password})
				if err != nil {
					return err
				}
			}
			if err := dir.Save(c.URL.String(), resp.SessionToken); err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Logged in to %s as %s (%s).\n", c.URL, resp.User.Username, resp.User.Role)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&first.Username, "first-user-username", "", "username of the first admin (new servers only)")
	f.StringVar(&first.Email, "first-user-email", "", "email of the first admin (new servers only)")
	f.StringVar(&first.Password, "first-user-password", "", "password of the first admin (new servers only)")
	f.StringVar(&username, "username", "", "username or email to sign in with")
	f.StringVar(&password, "password", "", "password to sign in with")
	// For scripts that set a deployment up; passwords have no variable.
	option.Scoped(cmd, "first-user-username", "first-user-email", "username")
	return cmd
}

// loginError explains why the first request of a login failed: the URL
// is not a Tether server's, or, for a URL given without a scheme (which
// means https://), the server may speak plain HTTP.
func loginError(c *client.Client, rawURL string, err error) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("%s is not a Tether server: it answered the API with something other than JSON (a web page?); give the access URL that `tether server` printed", c.URL)
	case tether.ErrorCode(err) == tether.ENOTFOUND:
		return fmt.Errorf("%s is not a Tether server: it has no Tether API (%s); give the access URL that `tether server` printed, without a path", c.URL, tether.ErrorMessage(err))
	case tether.ErrorCode(err) == tether.EUNAVAILABLE && !strings.Contains(rawURL, "://") && c.URL.Scheme == "https":
		return fmt.Errorf("%w\nhint: a URL without a scheme means https://; if the server has no TLS, run `tether login http://%s`", err, c.URL.Host+c.URL.Path)
	}
	return fmt.Errorf("check %s: %w", c.URL, err)
}

func askFirstUser(p *prompter, first *tether.CreateFirstUserRequest) error {
	var err error
	if first.Username == "" {
		if first.Username, err = p.ask("Username", "admin"); err != nil {
			return err
		}
	}
	if first.Email == "" {
		if first.Email, err = p.ask("Email", ""); err != nil {
			return err
		}
	}
	for first.Password == "" {
		pw, err := p.askSecret("Password")
		if err != nil {
			return err
		}
		again, err := p.askSecret("Password again")
		if err != nil {
			return err
		}
		if pw != again {
			fmt.Fprintln(p.env.Stderr, "The passwords differ; try again.")
			continue
		}
		first.Password = pw
	}
	return nil
}

func (r *root) logoutCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "logout",
		Short: "Sign out and forget the saved session (--all: every session of yours)",
		Long: "Sign out: the server ends this session and the CLI forgets it.\n\n" +
			"With --all, every session of yours ends, on every machine and browser, and with them your\n" +
			"open terminals and tunnels: for a lost laptop, or a session you do not recognize.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			if all {
				// The server must end them all; forgetting this one alone
				// would leave the others open.
				resp, err := c.EndSessions(cmd.Context(), "me")
				if err != nil {
					return err
				}
				if err := config.Dir(r.configDir).Forget(); err != nil {
					return err
				}
				fmt.Fprintf(r.env.Stdout, "Logged out of %s everywhere (%s ended).\n", c.URL, plural(resp.Ended, "session"))
				return nil
			}
			// Forget locally even if the server is gone: the user asked to.
			err = c.Logout(cmd.Context())
			if ferr := config.Dir(r.configDir).Forget(); ferr != nil {
				return ferr
			}
			if err != nil && tether.ErrorCode(err) != tether.EUNAUTHORIZED {
				fmt.Fprintf(r.env.Stderr, "warning: the server did not end the session: %v\n", err)
			}
			fmt.Fprintf(r.env.Stdout, "Logged out of %s.\n", c.URL)
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "end every session of yours, everywhere, not just this one")
	return cmd
}
