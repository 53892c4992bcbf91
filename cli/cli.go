// Package cli is Tether's command line for users and agents: login, users,
// templates, workspaces, the agent, and (in later files) the commands that
// open tunnels. `tether server` is wired in by cmd/tether from package
// servercmd, so that this package never links the server or its store.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/config"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator/coordclient"
)

// Version is the build's version, set by the linker or left as "dev".
var Version = "dev"

// Env is what a command takes from the process: its streams and environment.
// Tests supply their own.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// OSEnv returns the process's own Env.
func OSEnv() *Env {
	return &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// root holds the global flags shared by every command.
type root struct {
	env          *Env
	start        time.Time // when the command started, for the connect timeline
	url          string
	sessionToken string
	configDir    string
	// abort cancels the running command's context with a cause that Run
	// reports instead of the command's own error: the server took the
	// user's access away while a tunnel was open.
	abort context.CancelCauseFunc
	// keepalive, when set, replaces the exec protocol's keepalive interval
	// and timeout (sshKeepaliveInterval, sshKeepaliveTimeout); for tests.
	keepalive *[2]time.Duration
}

// Root returns the `tether` command with every client-side subcommand.
func Root(env *Env) *cobra.Command {
	r := &root{env: env, start: time.Now()}
	cmd := &cobra.Command{
		Use:           "tether",
		Short:         "Tether connects you to your remote workspaces",
		Long:          "Tether connects you to your remote workspaces over end-to-end encrypted WireGuard tunnels,\ndirect through NAT when the network allows and relayed by the server when it does not.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       shortVersion(BuildVersion()),
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithCancelCause(cmd.Context())
			cmd.SetContext(ctx)
			r.abort = cancel
			return option.Apply(cmd, env.Getenv)
		},
	}
	cmd.SetIn(env.Stdin)
	cmd.SetOut(env.Stdout)
	cmd.SetErr(env.Stderr)
	// `tether completion` is ours, with the shells listed in its help.
	cmd.CompletionOptions.DisableDefaultCmd = true
	pf := cmd.PersistentFlags()
	pf.StringVar(&r.url, "url", "", "URL of the Tether server (default: the one you logged in to)")
	pf.StringVar(&r.sessionToken, "session-token", "", "session token (default: the one saved by 'tether login')")
	pf.StringVar(&r.configDir, "config-dir", config.DefaultDir(), "where the CLI keeps its URL and session token")
	option.Global(cmd, "url", "session-token", "config-dir")
	cmd.AddCommand(
		r.loginCommand(),
		r.logoutCommand(),
		r.usersCommand(),
		r.templatesCommand(),
		r.tokensCommand(),
		r.createCommand(),
		r.listCommand(),
		r.deleteCommand(),
		r.sshCommand(),
		r.configSSHCommand(),
		r.portForwardCommand(),
		r.pingCommand(),
		r.speedtestCommand(),
		r.netcheckCommand(),
		r.wsproxyCommand(),
		agentCommand(env),
		versionCommand(env),
		completionCommand(env),
	)
	// Commands whose first argument is a workspace complete its name.
	for _, c := range cmd.Commands() {
		switch c.Name() {
		case "ssh", "port-forward", "ping", "speedtest", "delete":
			c.ValidArgsFunction = r.completeWorkspace
		}
	}
	return cmd
}

// Run runs cmd with args and returns the process exit code, printing any
// error as a person should read it.
func Run(ctx context.Context, cmd *cobra.Command, env *Env, args []string) int {
	option.Document(cmd)
	cmd.SetArgs(args)
	ran, err := cmd.ExecuteContextC(ctx)
	var revoked *coordclient.AccessRevokedError
	if ran != nil && ran.Context() != nil && errors.As(context.Cause(ran.Context()), &revoked) {
		// Whatever the command was doing ended because of this.
		err = revoked
	}
	if err == nil {
		return 0
	}
	var ex *exitError
	if errors.As(err, &ex) {
		return ex.code
	}
	// Stopped while it waited (for an agent, a tunnel, an answer): the
	// user knows why, so nothing more to say.
	var intr *Interrupted
	if errors.As(context.Cause(ctx), &intr) {
		return intr.exitCode()
	}
	fmt.Fprintln(env.Stderr, formatError(err))
	return 1
}

// exitError carries an exit code that a command passes through (the
// remote command's, for `tether ssh`) without printing anything.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// formatError renders err for the terminal. The server's messages already
// say what to do; this is the only place where the CLI adds words by code.
func formatError(err error) string {
	var b strings.Builder
	b.WriteString("error: ")
	var te *tether.Error
	if errors.As(err, &te) {
		// Keep the context the CLI added, but not the code's message twice.
		b.WriteString(err.Error())
		if te.Code == tether.EINTERNAL {
			b.WriteString("\nhint: the server logged the details")
		}
		return b.String()
	}
	b.WriteString(err.Error())
	return b.String()
}

// client returns an API client for the server the user logged in to, or
// the one named by --url / $TETHER_URL.
func (r *root) client() (*client.Client, error) {
	dir := config.Dir(r.configDir)
	rawURL := r.url
	if rawURL == "" {
		u, err := dir.URL()
		if err != nil {
			return nil, err
		}
		rawURL = u
	}
	if rawURL == "" {
		return nil, errors.New("not logged in: run `tether login URL` first")
	}
	c, err := client.New(rawURL)
	if err != nil {
		return nil, err
	}
	c.SessionToken = r.sessionToken
	if c.SessionToken == "" {
		t, err := dir.Session()
		if err != nil {
			return nil, err
		}
		c.SessionToken = t
	}
	if c.SessionToken == "" {
		return nil, fmt.Errorf("not logged in to %s: run `tether login %s`", c.URL, c.URL)
	}
	return c, nil
}
