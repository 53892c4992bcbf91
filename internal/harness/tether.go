package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Tether runs one tether binary: on this machine, or wherever Command
// puts its processes (natlab's Host.Command: inside a namespace of the NAT
// lab). The same binary in another place is another Tether value.
type Tether struct {
	Bin string
	// Command makes each command; nil runs programs on this machine.
	Command Commander
	// Host names where Command runs processes, for their names in logs
	// ("agent@client"); empty for this machine.
	Host string
}

// Cmd returns a command that runs tether with args, in an environment
// with env added to a clean one. The caller runs it, and ctx bounds it.
func (x Tether) Cmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	run := x.Command
	if run == nil {
		run = exec.CommandContext
	}
	cmd := run(ctx, x.Bin, args...)
	cmd.Env = append(CleanEnv(), env...)
	return cmd
}

// Start runs tether with args as a long-lived process (see Start).
func (x Tether) Start(t T, name string, env []string, args ...string) *Proc {
	t.Helper()
	if x.Host != "" {
		name += "@" + x.Host
	}
	// Not bound to a context: it runs until the test ends or stops it.
	return Start(t, name, x.Cmd(context.Background(), nil, args...), env)
}

// StartAgent runs `tether agent` for the workspace whose token it is.
func (x Tether) StartAgent(t T, url, token string, env ...string) *Proc {
	t.Helper()
	return x.Start(t, "agent", append([]string{"TETHER_AGENT_TOKEN=" + token}, env...), "agent", "--url", url)
}

// Server is a running `tether server`.
type Server struct {
	*Proc
	// URL is its access URL, as it printed it.
	URL     string
	DataDir string

	t    T
	x    Tether
	opts ServerOptions
}

// ServerOptions say how to run `tether server`. The zero value serves on
// a free loopback port, with a fresh data directory, and a STUN port and a
// UDP relay port of its own, so that tests never collide on a port.
type ServerOptions struct {
	Addr    string   // --http-address; default 127.0.0.1:0
	DataDir string   // --data-dir; default a fresh temporary directory
	STUN    []string // --derp-server-stun-addresses; default 127.0.0.1:0
	// UDPRelay is --udp-relay-address; default 127.0.0.1:0 (a free port,
	// given to peers at 127.0.0.1).
	UDPRelay string
	Args     []string // further flags
	Env      []string // added to the server's environment
}

// ListeningRE matches the line a server prints once it serves, with its
// access URL.
var ListeningRE = regexp.MustCompile(`^Tether is listening at (\S+)`)

// StartServer starts a server with the default options and args as
// further flags, and waits until it serves.
func (x Tether) StartServer(t T, args ...string) *Server {
	t.Helper()
	return x.StartServerWith(t, ServerOptions{Args: args})
}

// StartServerWith starts a server and waits until it serves.
func (x Tether) StartServerWith(t T, o ServerOptions) *Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if len(o.STUN) == 0 {
		o.STUN = []string{"127.0.0.1:0"}
	}
	if o.UDPRelay == "" {
		o.UDPRelay = "127.0.0.1:0"
	}
	s := &Server{DataDir: o.DataDir, t: t, x: x, opts: o}
	s.Restart()
	return s
}

// Restart starts the server again, after Stop or Kill, with the same
// options: the same data, flags and address (a free port, if it was asked
// for one, may be another one now).
func (s *Server) Restart() {
	s.t.Helper()
	args := append([]string{"server", "--http-address", s.opts.Addr, "--data-dir", s.opts.DataDir,
		"--derp-server-stun-addresses", strings.Join(s.opts.STUN, ","),
		"--udp-relay-address", s.opts.UDPRelay}, s.opts.Args...)
	s.Proc = s.x.Start(s.t, "server", s.opts.Env, args...)
	s.URL = s.WaitLine(ListeningRE)[1]
}

// The first admin of a deployment, as FirstAdmin signs them in.
const (
	AdminName     = "alice"
	AdminEmail    = "alice@example.com"
	AdminPassword = "correct-horse"
)

// User is someone at a CLI, with a config directory of their own.
type User struct {
	ConfigDir string
	// Env is added to a clean environment for each of the user's
	// commands: TETHER_CONFIG_DIR, and whatever a test adds.
	Env []string

	t T
	x Tether
}

// NewUser returns a user with a fresh config directory, signed in nowhere.
func (x Tether) NewUser(t T) *User {
	dir := t.TempDir()
	return &User{ConfigDir: dir, Env: []string{"TETHER_CONFIG_DIR=" + dir}, t: t, x: x}
}

// Admin signs a new user in to the server at url as its first admin.
func (x Tether) Admin(t T, url string) *User {
	t.Helper()
	u := x.NewUser(t)
	u.LoginFirstAdmin(url)
	return u
}

// Member creates a member called name with the admin's CLI, with the
// password name+"-password", and signs them in to url at a CLI of their
// own.
func (x Tether) Member(t T, url string, adm *User, name string) *User {
	t.Helper()
	adm.Must("users", "create", "--username", name, "--email", name+"@example.com", "--password", name+"-password")
	u := x.NewUser(t)
	u.Must("login", url, "--username", name, "--password", name+"-password")
	return u
}

// LoginFirstAdmin creates the server's first user, an admin, and signs u
// in as them.
func (u *User) LoginFirstAdmin(url string) {
	u.t.Helper()
	u.Must("login", url, "--first-user-username", AdminName, "--first-user-email", AdminEmail, "--first-user-password", AdminPassword)
}

// Result is what a finished CLI command printed, and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Cmd returns the user's CLI command with args, for the caller to run.
func (u *User) Cmd(ctx context.Context, args ...string) *exec.Cmd {
	return u.x.Cmd(ctx, u.Env, args...)
}

// Run runs a CLI command to completion (within CommandTimeout).
func (u *User) Run(args ...string) Result {
	u.t.Helper()
	return u.RunInput("", args...)
}

// RunInput runs a CLI command with stdin to completion.
func (u *User) RunInput(stdin string, args ...string) Result {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.t.Context(), CommandTimeout)
	defer cancel()
	r, err := u.Exec(ctx, stdin, args...)
	if err != nil {
		u.t.Fatalf("%v (given %s)\nstdout: %.2000s\nstderr: %s", err, CommandTimeout, r.Stdout, r.Stderr)
	}
	return r
}

// Exec runs a CLI command with stdin within ctx, and returns what it
// printed and its exit code. Its error is for a command that did not run,
// or did not finish before ctx ended; it never fails the test, for callers
// that count failures (the bench).
func (u *User) Exec(ctx context.Context, stdin string, args ...string) (Result, error) {
	cmd := u.Cmd(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	if ctx.Err() != nil {
		return r, fmt.Errorf("tether %s did not finish: %w", strings.Join(args, " "), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		return r, fmt.Errorf("tether %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// Must runs a command that must succeed and returns its stdout.
func (u *User) Must(args ...string) string {
	u.t.Helper()
	return u.MustInput("", args...)
}

// MustInput runs a command with stdin that must succeed and returns its
// stdout.
func (u *User) MustInput(stdin string, args ...string) string {
	u.t.Helper()
	r := u.RunInput(stdin, args...)
	if r.Code != 0 {
		u.t.Fatalf("tether %s: exit %d\nstdout: %.2000s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Fails runs a command that must fail, without a stack trace, and returns
// its stderr.
func (u *User) Fails(args ...string) string {
	u.t.Helper()
	r := u.Run(args...)
	if r.Code == 0 {
		u.t.Fatalf("tether %s succeeded, want failure\nstdout: %s", strings.Join(args, " "), r.Stdout)
	}
	if strings.Contains(r.Stderr, "goroutine ") || strings.Contains(r.Stderr, "panic") {
		u.t.Fatalf("tether %s printed a stack trace:\n%s", strings.Join(args, " "), r.Stderr)
	}
	return r.Stderr
}

// Start runs a long-lived CLI command (port-forward, a ping stream).
func (u *User) Start(name string, args ...string) *Proc {
	u.t.Helper()
	return u.x.Start(u.t, name, u.Env, args...)
}

// Token returns the session token the user's CLI saved.
func (u *User) Token() string {
	u.t.Helper()
	b, err := os.ReadFile(filepath.Join(u.ConfigDir, "session"))
	if err != nil {
		u.t.Fatalf("read the session token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// ListedWorkspace is a workspace as `tether list --output json` shows it.
type ListedWorkspace struct {
	Name        string     `json:"name"`
	Owner       string     `json:"owner"`
	AgentStatus string     `json:"agent_status"`
	LastSeen    *time.Time `json:"last_seen"`
}

// Workspaces lists the workspaces the user sees.
func (u *User) Workspaces() []ListedWorkspace {
	u.t.Helper()
	var ws []ListedWorkspace
	out := u.Must("list", "--output", "json")
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		u.t.Fatalf("list --output json: %v\n%s", err, out)
	}
	return ws
}

// AgentStatus returns the named workspace's agent status as the user sees
// it: "connected" or "disconnected".
func (u *User) AgentStatus(workspace string) string {
	u.t.Helper()
	for _, w := range u.Workspaces() {
		if w.Name == workspace {
			return w.AgentStatus
		}
	}
	u.t.Fatalf("workspace %s not listed", workspace)
	return ""
}

// CreateWorkspace creates a workspace (extra are further flags) and
// returns its agent token and the URL its agent must use.
func (u *User) CreateWorkspace(name string, extra ...string) (token, agentURL string) {
	u.t.Helper()
	out := u.Must(append([]string{"create", name, "--output", "json"}, extra...)...)
	var v struct {
		Name       string `json:"name"`
		AgentToken string `json:"agent_token"`
		AgentURL   string `json:"agent_url"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != name || v.AgentToken == "" || v.AgentURL == "" {
		u.t.Fatalf("create --output json = %s (%v)", out, err)
	}
	return v.AgentToken, v.AgentURL
}

// Deployment is what most tests, and the bench, start from: a server, its
// first admin signed in at a CLI, and a workspace whose agent is
// connected.
type Deployment struct {
	Server    *Server
	User      *User // the admin
	Workspace string
	Agent     *Proc
	// Token and AgentURL are what the agent was started with.
	Token, AgentURL string
}

// DeploymentOptions say what StartDeployment adds to a server, and where.
type DeploymentOptions struct {
	Workspace string // its name; default "dev"
	// CLI and Agent are where the admin's CLI and the agent run; the zero
	// value, where the server runs.
	CLI, Agent Tether
	// CLIEnv and AgentEnv are added to their environments.
	CLIEnv, AgentEnv []string
}

// StartDeployment signs the first admin in to srv, creates a workspace,
// starts its agent, and waits until the agent is connected.
func StartDeployment(t T, srv *Server, o DeploymentOptions) *Deployment {
	t.Helper()
	if o.Workspace == "" {
		o.Workspace = "dev"
	}
	if o.CLI.Bin == "" {
		o.CLI = srv.x
	}
	if o.Agent.Bin == "" {
		o.Agent = srv.x
	}
	u := o.CLI.NewUser(t)
	u.Env = append(u.Env, o.CLIEnv...)
	u.LoginFirstAdmin(srv.URL)
	token, agentURL := u.CreateWorkspace(o.Workspace)
	agent := o.Agent.StartAgent(t, agentURL, token, o.AgentEnv...)
	WaitFor(t, StatusTimeout, "agent connected", func() bool {
		select {
		case <-agent.Done():
			t.Fatalf("the agent exited (%v) before it connected:\n%s", agent.Err(), Tail(agent.Output(), tailLines))
		default:
		}
		return u.AgentStatus(o.Workspace) == "connected"
	})
	return &Deployment{Server: srv, User: u, Workspace: o.Workspace, Agent: agent, Token: token, AgentURL: agentURL}
}

// ProxyListeningRE matches the line a workspace proxy prints once it
// serves, with its name and access URL.
var ProxyListeningRE = regexp.MustCompile(`^Workspace proxy (\S+) is listening at (\S+)`)

// WSProxy is a running `tether wsproxy server`.
type WSProxy struct {
	*Proc
	URL string // its access URL, as it printed it
}

// StartWSProxy runs a workspace proxy for the primary at primaryURL with
// its token, on a free loopback port with a STUN port of its own, args as
// further flags, and waits until it serves.
func (x Tether) StartWSProxy(t T, primaryURL, token string, args ...string) *WSProxy {
	t.Helper()
	full := append([]string{"wsproxy", "server", "--primary-access-url", primaryURL,
		"--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "127.0.0.1:0"}, args...)
	p := x.Start(t, "wsproxy", []string{"TETHER_PROXY_TOKEN=" + token}, full...)
	return &WSProxy{Proc: p, URL: p.WaitLine(ProxyListeningRE)[2]}
}

// CreateWSProxy registers a workspace proxy with the user's CLI and
// returns its token.
func (u *User) CreateWSProxy(name string, extra ...string) string {
	u.t.Helper()
	out := u.Must(append([]string{"wsproxy", "create", name, "--output", "json"}, extra...)...)
	var v struct {
		Token string `json:"proxy_token"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Token == "" {
		u.t.Fatalf("wsproxy create --output json = %s (%v)", out, err)
	}
	return v.Token
}
