package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
)

func (r *root) usersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users (admins)"}
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
	f.StringVar(&req.Password, "password", "", "password (at least 8 characters)")
	f.StringVar(&role, "role", string(tether.RoleMember), "member or admin")
	for _, n := range []string{"username", "email", "password"} {
		create.MarkFlagRequired(n)
	}

	var format string
	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error {
			return checkOutput(format)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client()
			if err != nil {
				return err
			}
			users, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(r.env.Stdout, users)
			}
			rows := make([][]string, 0, len(users))
			for _, u := range users {
				rows = append(rows, []string{u.Username, u.Email, string(u.Role), u.CreatedAt.Local().Format("2006-01-02")})
			}
			return table(r.env.Stdout, "USERNAME\tEMAIL\tROLE\tCREATED", rows)
		},
	}
	outputFlag(list, &format)
	cmd.AddCommand(create, list)
	return cmd
}
