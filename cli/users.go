package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
)

func (r *root) usersCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage users (admins), and your own password",
		Long: "Manage users. Admins add, list, suspend, reactivate, delete and sign out users, change their\n" +
			"roles and reset their passwords; every change that takes access away ends the user's open\n" +
			"terminals and tunnels at once. Anyone may change their own password (reset-password).",
	}
	cmd.AddCommand(
		r.usersCreateCommand(),
		r.usersListCommand(),
		r.usersStatusCommand("suspend", tether.UserSuspended),
		r.usersStatusCommand("unsuspend", tether.UserActive),
		r.usersSetRoleCommand(),
		r.usersResetPasswordCommand(),
		r.usersLogoutCommand(),
		r.usersDeleteCommand(),
	)
	return cmd
}

func (r *root) usersCreateCommand() *cobra.Command {
	var req tether.CreateUserRequest
	var role string
	create := &cobra.Command{
		Use:   "create",
		Short: "Add a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			req.Role = tether.Role(role)
			u, err := c.CreateUser(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Created %s %s <%s>.\n", u.Role, u.Username, u.Email)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&req.Username, "username", "", "username (lowercase letters, digits, hyphens)")
	f.StringVar(&req.Email, "email", "", "email address")
	f.StringVar(&req.Password, "password", "", "password (at least 8 characters, not a common one)")
	f.StringVar(&role, "role", string(tether.RoleMember), "member or admin")
	for _, n := range []string{"username", "email", "password"} {
		create.MarkFlagRequired(n)
	}
	return create
}

func (r *root) usersListCommand() *cobra.Command {
	return listingCommand(r, &cobra.Command{
		Use:   "list",
		Short: "List users, with their role and status",
		Args:  cobra.NoArgs,
	}, listing[tether.User]{
		fetch: func(ctx context.Context, c *client.Client) ([]tether.User, error) {
			return c.Users(ctx)
		},
		header: "USERNAME\tEMAIL\tROLE\tSTATUS\tCREATED",
		row: func(u tether.User, _ time.Time) []string {
			return []string{u.Username, u.Email, string(u.Role), string(u.Status), u.CreatedAt.Local().Format("2006-01-02")}
		},
	})
}

// usersStatusCommand is `users suspend` or `users unsuspend`.
func (r *root) usersStatusCommand(name string, status tether.UserStatus) *cobra.Command {
	short := "Suspend a user: end their sessions, terminals and tunnels at once, and refuse them until unsuspended"
	done := "Suspended %s: their sessions, terminals and tunnels have ended.\n"
	var aliases []string
	if status == tether.UserActive {
		short = "Make a suspended user active again (they sign in anew)"
		done = "%s is active again.\n"
		aliases = []string{"activate"}
	}
	return &cobra.Command{
		Use:     name + " USER",
		Aliases: aliases,
		Short:   short,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			u, err := c.SetUserStatus(cmd.Context(), args[0], status)
			if err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, done, u.Username)
			return nil
		},
	}
}

func (r *root) usersSetRoleCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "set-role USER admin|member",
		Short: "Change a user's role; a demoted admin's tunnels and terminals to others' workspaces end at once",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := tether.Role(args[1])
			if !role.Valid() {
				return fmt.Errorf("role %q must be admin or member", args[1])
			}
			c, err := r.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if role != tether.RoleAdmin && !yes {
				me, err := c.Me(ctx)
				if err != nil {
					return err
				}
				if args[0] == "me" || args[0] == me.Username {
					if err := r.confirm(ctx, fmt.Sprintf("Demote yourself to %s? Only another admin can make you admin again. Type your username to confirm", role), me.Username,
						"refusing to demote yourself without confirmation: pass --yes"); err != nil {
						return err
					}
				}
			}
			u, err := c.SetUserRole(ctx, args[0], role)
			if err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "%s is now %s.\n", u.Username, u.Role)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (when demoting yourself)")
	return cmd
}

func (r *root) usersResetPasswordCommand() *cobra.Command {
	var newPassword, oldPassword string
	cmd := &cobra.Command{
		Use:   "reset-password [USER]",
		Short: "Change your own password (with the current one), or reset a user's (admins)",
		Long: "Change your own password (no USER, or your own name): give the current one too. Your other\n" +
			"sessions end; this one stays.\n\n" +
			"Admins reset another user's password without the current one; all of that user's sessions,\n" +
			"terminals and tunnels end.\n\n" +
			"Without --password (and --old-password), the command asks on the terminal.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			me, err := c.Me(ctx)
			if err != nil {
				return err
			}
			user := "me"
			if len(args) == 1 && args[0] != me.Username {
				user = args[0]
			}
			self := user == "me"
			if !self && oldPassword != "" {
				return errors.New("--old-password is for changing your own password; an admin resets another user's without it")
			}
			p := newPrompter(ctx, r.env)
			if self && oldPassword == "" {
				if !p.interactive() {
					return errors.New("pass --old-password (your current password) and --password (stdin is not a terminal, so the CLI cannot ask)")
				}
				if oldPassword, err = p.askSecret("Current password"); err != nil {
					return err
				}
			}
			if newPassword == "" {
				if !p.interactive() {
					return errors.New("pass --password (stdin is not a terminal, so the CLI cannot ask)")
				}
				if newPassword, err = askNewPassword(p); err != nil {
					return err
				}
			}
			if err := c.SetUserPassword(ctx, user, tether.UpdateUserPasswordRequest{OldPassword: oldPassword, Password: newPassword}); err != nil {
				return err
			}
			if self {
				fmt.Fprintln(r.env.Stdout, "Changed your password. Your other sessions have ended; this one stays.")
			} else {
				fmt.Fprintf(r.env.Stdout, "Reset the password of %s. Their sessions, terminals and tunnels have ended.\n", user)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&newPassword, "password", "", "the new password (at least 8 characters, not a common one)")
	cmd.Flags().StringVar(&oldPassword, "old-password", "", "your current password, when changing your own")
	return cmd
}

// askNewPassword asks for a new password twice.
func askNewPassword(p *prompter) (string, error) {
	for {
		pw, err := p.askSecret("New password")
		if err != nil {
			return "", err
		}
		again, err := p.askSecret("New password again")
		if err != nil {
			return "", err
		}
		if pw == again {
			return pw, nil
		}
		fmt.Fprintln(p.env.Stderr, "The passwords differ; try again.")
	}
}

func (r *root) usersLogoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout USER",
		Short: "Sign a user out of every session, and end their terminals and tunnels (admins)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			resp, err := c.EndSessions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(r.env.Stdout, "Signed %s out of %s.\n", args[0], plural(resp.Ended, "session"))
			return nil
		},
	}
}

func (r *root) usersDeleteCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete USER",
		Short: "Delete a user, and their workspaces (it asks, listing them)",
		Long: "Delete a user: their sessions, terminals and tunnels end at once. A user who owns workspaces\n" +
			"is deleted with them (their agents are disconnected and their tokens revoked): the command\n" +
			"lists them and asks you to type the username, or takes --yes.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			c, err := r.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			me, err := c.Me(ctx)
			if err != nil {
				return err
			}
			if me.Role != tether.RoleAdmin {
				// Members see no other user, so the lookup below would
				// say "not found".
				return tether.Errorf(tether.EFORBIDDEN, "only admins may delete users")
			}
			owned, err := ownedWorkspaces(cmd, c, name)
			if err != nil {
				return err
			}
			if !yes {
				what := "user " + name
				if len(owned) > 0 {
					what += " and their " + plural(len(owned), "workspace") + " (" + strings.Join(owned, ", ") + ")"
				}
				if err := r.confirm(ctx, fmt.Sprintf("Delete %s? This cannot be undone. Type the username to confirm", what), name,
					fmt.Sprintf("refusing to delete %s without confirmation: pass --yes", what)); err != nil {
					return err
				}
			}
			resp, err := c.DeleteUser(ctx, name, true)
			if err != nil {
				return err
			}
			if n := len(resp.DeletedWorkspaces); n > 0 {
				fmt.Fprintf(r.env.Stdout, "Deleted user %s and their %s (%s).\n", name, plural(n, "workspace"), strings.Join(resp.DeletedWorkspaces, ", "))
			} else {
				fmt.Fprintf(r.env.Stdout, "Deleted user %s.\n", name)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (deletes the user's workspaces too)")
	return cmd
}

// ownedWorkspaces names the workspaces of user, as an admin sees them.
func ownedWorkspaces(cmd *cobra.Command, c *client.Client, user string) ([]string, error) {
	u, err := c.User(cmd.Context(), user)
	if err != nil {
		return nil, err
	}
	all, err := c.Workspaces(cmd.Context(), false)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, w := range all {
		if w.OwnerID == u.ID {
			names = append(names, w.Name)
		}
	}
	return names, nil
}

// confirm asks the user to type want; refusal is the error when stdin is
// not a terminal.
func (r *root) confirm(ctx context.Context, question, want, refusal string) error {
	p := newPrompter(ctx, r.env)
	if !p.interactive() {
		return errors.New(refusal)
	}
	answer, err := p.ask(question, "")
	if err != nil {
		return err
	}
	if answer != want {
		return fmt.Errorf("nothing changed: %q is not %q", answer, want)
	}
	return nil
}

// plural is "1 session", "3 sessions".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
