package main

import (
	"bufio"
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
	"sync"
	"syscall"
	"time"
)

// Timeouts for the real processes. They bound waits; nothing sleeps them.
const (
	startTimeout   = 30 * time.Second // a process becomes ready
	commandTimeout = 60 * time.Second // one CLI command finishes
)

// commander makes the command that runs a program: exec.CommandContext on
// this host, or natlab's Host.Command inside a namespace.
type commander func(ctx context.Context, name string, args ...string) *exec.Cmd

func onHost(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, name, args...)
}

// proc is a running tether process whose output is kept.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string // stdout lines, for waiting on a message
	done  chan struct{}
	err   error // set before done closes

	mu  sync.Mutex
	out bytes.Buffer // stdout and stderr, interleaved
}

type procWriter struct{ p *proc }

func (w procWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	// Keep the tail only: a long run must not grow without bound.
	if w.p.out.Len() > 1<<20 {
		tail := append([]byte(nil), w.p.out.Bytes()[w.p.out.Len()-(256<<10):]...)
		w.p.out.Reset()
		w.p.out.Write(tail)
	}
	return w.p.out.Write(b)
}

// startProc starts bin with args through run, with env added to a clean
// environment. The process lives until stop, not until ctx ends.
func startProc(run commander, name string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, lines: make(chan string, 4096), done: make(chan struct{})}
	p.cmd = run(context.Background(), bin, args...)
	p.cmd.Env = append(baseEnv(), env...)
	// Its own process group, so that stop reaches what it starts (the
	// agent's shells). Not Pdeathsig: it fires when the forking OS thread
	// exits, and natlab ends the threads it locks into namespaces, which
	// killed the lab's server mid-run. An interrupt (ctx) stops these
	// processes instead.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = procWriter{p}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			procWriter{p}.Write([]byte(line + "\n"))
			select {
			case p.lines <- line:
			default:
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// baseEnv is the environment every process starts from: no TETHER_
// variables leak in from the caller's shell.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TETHER_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits for a stdout line matching re and returns its submatches.
func (p *proc) waitLine(ctx context.Context, re *regexp.Regexp) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		select {
		case line := <-p.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m, nil
			}
		case <-p.done:
			return nil, fmt.Errorf("%s exited (%v) before printing %q:\n%s", p.name, p.err, re, tail(p.output()))
		case <-ctx.Done():
			return nil, fmt.Errorf("%s did not print %q: %w:\n%s", p.name, re, ctx.Err(), tail(p.output()))
		}
	}
}

// stop asks the process to end (SIGTERM to its group), and kills the group
// if it has not ended within a few seconds.
func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last lines of a process's output, for error messages.
func tail(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// deploymentOptions say where the parts of a deployment run.
type deploymentOptions struct {
	Bin string // the tether binary
	Dir string // scratch directory for the server's data and the CLI's config
	// ServerArgs are added to `tether server`; they must include
	// --http-address (and --derp-server-stun-addresses, unless the
	// default port is free).
	ServerArgs []string
	// Server, Agent and CLI run each part; nil runs it on this host.
	Server, Agent, CLI commander
	// AgentEnv is added to the agents' environment.
	AgentEnv []string
}

// deployment is a real server with one workspace ("bench") whose agent is
// connected, and a logged-in CLI user.
type deployment struct {
	opts      deploymentOptions
	URL       string
	Workspace string
	cliEnv    []string
	server    *proc
	agent     *proc
	// extraAgents are the agents of workspaces added with addWorkspace.
	extraAgents []*proc
}

var listeningRE = regexp.MustCompile(`^Tether is listening at (\S+)`)

// startDeployment starts the server, logs in its first admin, creates the
// workspace and starts its agent, and waits until the agent is connected.
func startDeployment(ctx context.Context, opts deploymentOptions) (_ *deployment, err error) {
	for _, c := range []*commander{&opts.Server, &opts.Agent, &opts.CLI} {
		if *c == nil {
			*c = onHost
		}
	}
	d := &deployment{opts: opts, Workspace: "bench"}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	cfg := filepath.Join(opts.Dir, "cli")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		return nil, err
	}
	d.cliEnv = []string{"TETHER_CONFIG_DIR=" + cfg}

	args := append([]string{"server", "--data-dir", filepath.Join(opts.Dir, "server")}, opts.ServerArgs...)
	d.server, err = startProc(opts.Server, "server", nil, opts.Bin, args...)
	if err != nil {
		return nil, err
	}
	m, err := d.server.waitLine(ctx, listeningRE)
	if err != nil {
		return nil, err
	}
	d.URL = m[1]

	if _, err := d.cli(ctx, "login", d.URL, "--first-user-username", "bench",
		"--first-user-email", "bench@example.com", "--first-user-password", "bench-password-123"); err != nil {
		return nil, err
	}
	out, err := d.cli(ctx, "create", d.Workspace, "--output", "json")
	if err != nil {
		return nil, err
	}
	token, agentURL, err := parseCreated(out)
	if err != nil {
		return nil, err
	}
	d.agent, err = startProc(opts.Agent, "agent", append([]string{"TETHER_AGENT_TOKEN=" + token}, opts.AgentEnv...),
		opts.Bin, "agent", "--url", agentURL)
	if err != nil {
		return nil, err
	}
	if err := d.awaitAgent(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// awaitAgent polls `tether list` until the agent shows as connected.
func (d *deployment) awaitAgent(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if connected, err := d.connectedAgents(ctx); err == nil && connected[d.Workspace] {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent never connected: %w\nagent output:\n%s", ctx.Err(), tail(d.agent.output()))
		case <-d.agent.done:
			return fmt.Errorf("agent exited (%v):\n%s", d.agent.err, tail(d.agent.output()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// parseCreated reads what `tether create --output json` printed.
func parseCreated(out string) (token, agentURL string, err error) {
	var created struct {
		AgentToken string `json:"agent_token"`
		AgentURL   string `json:"agent_url"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.AgentToken == "" {
		return "", "", fmt.Errorf("create --output json printed %q: %v", out, err)
	}
	return created.AgentToken, created.AgentURL, nil
}

// parseConnected reads which workspaces `tether list --output json` shows
// with a connected agent.
func parseConnected(out string) (map[string]bool, error) {
	var ws []struct {
		Name        string `json:"name"`
		AgentStatus string `json:"agent_status"`
	}
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		return nil, fmt.Errorf("list --output json printed %q: %w", out, err)
	}
	connected := map[string]bool{}
	for _, w := range ws {
		connected[w.Name] = w.AgentStatus == "connected"
	}
	return connected, nil
}

// cliCmd returns a CLI command for the deployment's user.
func (d *deployment) cliCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := d.opts.CLI(ctx, d.opts.Bin, args...)
	cmd.Env = append(baseEnv(), d.cliEnv...)
	return cmd
}

// cli runs a CLI command to completion and returns its stdout.
func (d *deployment) cli(ctx context.Context, args ...string) (string, error) {
	stdout, _, err := d.cliOutput(ctx, args...)
	return stdout, err
}

// cliOutput runs a CLI command to completion and returns its stdout and
// stderr.
func (d *deployment) cliOutput(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	cmd := d.cliCmd(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), errOut.String(), fmt.Errorf("tether %s: %w: %s", strings.Join(args, " "), err, tail(strings.TrimSpace(errOut.String())))
	}
	return out.String(), errOut.String(), nil
}

// startCLI starts a long-running CLI command (port-forward, ping).
func (d *deployment) startCLI(name string, args ...string) (*proc, error) {
	return startProc(d.opts.CLI, name, d.cliEnv, d.opts.Bin, args...)
}

func (d *deployment) close() {
	var wg sync.WaitGroup
	for _, a := range d.extraAgents {
		wg.Go(a.stop)
	}
	wg.Wait()
	if d.agent != nil {
		d.agent.stop()
	}
	if d.server != nil {
		d.server.stop()
	}
}

// buildTether builds the tether binary of the module at root into dir.
func buildTether(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "tether")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tether")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/tether: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of Tether's go.mod from the working
// directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/tetherdev/tether\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tether module: run from its checkout")
		}
		dir = parent
	}
}
