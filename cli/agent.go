package cli

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/agent"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/internal/logging"
	"github.com/tetherdev/tether/internal/metrics"
)

func agentCommand(env *Env) *cobra.Command {
	var rawURL, token, logLevel, logFormat, promAddr, pprofAddr string
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
			if rawURL == "" {
				return errors.New("no server URL: pass --url or set TETHER_AGENT_URL (`tether create` prints both)")
			}
			c, err := client.New(rawURL)
			if err != nil {
				return err
			}
			c.AgentToken = token
			// Sessions inherit the agent's environment: keep the token out.
			os.Unsetenv("TETHER_AGENT_TOKEN")
			logger, err := logging.New(env.Stderr, logLevel, logFormat)
			if err != nil {
				return err
			}
			version := BuildVersion().Version
			// The libraries' global log too: the agent owns its process.
			defer logging.CaptureStdLog(logger)()
			a, err := agent.New(agent.Options{Client: c, Logger: logger, Version: version})
			if err != nil {
				return err
			}
			if pprofAddr != "" {
				l, err := metrics.ListenPprof(pprofAddr, logger)
				if err != nil {
					return err
				}
				defer l.Close()
			}
			if promAddr != "" {
				reg := metrics.NewRegistry(version)
				reg.MustRegister(a.Collector())
				l, err := metrics.ListenPrometheus(promAddr, reg, logger)
				if err != nil {
					return err
				}
				defer l.Close()
			}
			logger.Info("starting agent", slog.String("url", c.URL.String()), slog.String("version", version))
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&rawURL, "url", "", "URL of the Tether server, as printed by 'tether create'")
	f.StringVar(&token, "token", "", "the workspace's agent token")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text, or json for one JSON object a line")
	f.StringVar(&promAddr, "prometheus-address", "", "serve the agent's Prometheus metrics at /metrics on this address, such as 127.0.0.1:2113 (off by default)")
	f.StringVar(&pprofAddr, "pprof-address", "", "serve Go's profiler at /debug/pprof/ on this loopback address (off by default)")
	// A deployment setting, but scoped: TETHER_URL is the CLI's, and the
	// agent may run beside a server whose TETHER_LOG_LEVEL is not its own.
	option.Scoped(cmd)
	return cmd
}
