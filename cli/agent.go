//go:build !windows

package cli

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/agent"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
)

func agentCommand(env *Env) *cobra.Command {
	var rawURL, token, logLevel string
	cmd := &cobra.Command{
		Use:   "agent --url URL --token TOKEN",
		Short: "Run a workspace's agent (inside the workspace)",
		Long: "Run the agent of a workspace. It connects out to the server, keeps that connection up\n" +
			"(reconnecting when the server goes away) and serves SSH, the web terminal, port forwards\n" +
			"and apps over the workspace's tunnel. `tether create` prints the exact command.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				return errors.New("no agent token: pass --token or set TETHER_AGENT_TOKEN (printed by `tether create`)")
			}
			c, err := client.New(rawURL)
			if err != nil {
				return err
			}
			c.AgentToken = token
			// Sessions inherit the agent's environment: keep the token out.
			os.Unsetenv("TETHER_AGENT_TOKEN")
			logger, err := newLogger(env.Stderr, logLevel)
			if err != nil {
				return err
			}
			a, err := agent.New(agent.Options{Client: c, Logger: logger, Version: Version})
			if err != nil {
				return err
			}
			logger.Info("starting agent", slog.String("url", c.URL.String()), slog.String("version", Version))
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&rawURL, "url", "", "URL of the Tether server, as printed by `tether create`")
	f.StringVar(&token, "token", "", "the workspace's agent token")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	option.SetEnv(f, "url", "TETHER_AGENT_URL")
	option.SetEnv(f, "token", "TETHER_AGENT_TOKEN")
	return cmd
}
