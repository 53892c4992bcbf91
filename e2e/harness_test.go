package e2e

// The end-to-end tests build the real binary once and drive real processes:
// a server, agents, and the CLI, each with its own config directory.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Timeouts shared by the tests. They are generous because CI runs on two
// loaded cores; tests wait on conditions, never on these durations.
const (
	startTimeout   = 30 * time.Second // a process becomes ready
	statusTimeout  = 20 * time.Second // a status change shows in the API
	commandTimeout = 60 * time.Second // one CLI command finishes
)

var tetherBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tetherBin = filepath.Join(dir, "tether")
	build := exec.Command("go", "build", "-o", tetherBin, "github.com/tetherdev/tether/cmd/tether")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tether:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		return runWithLeakCheck(m)
	}()
	os.Exit(code)
}

func runWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
	}
	return code
}

// proc is a running tether process whose output is captured.
type proc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // stdout and stderr, interleaved
	lines  chan string  // stdout lines, for waiting on a message
	done   chan struct{}
	waitEr error
}

// lockedWriter appends to the proc's buffer under its lock.
type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

// start runs tether with args and env (added to a clean environment).
func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, exec.Command(tetherBin, args...), env)
}

// startCmd runs cmd, which runs tether, in its own process group, captures
// its output, and kills it when the test ends.
func startCmd(t testing.TB, name string, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, cmd: cmd, lines: make(chan string, 1024), done: make(chan struct{})}
	p.cmd.Env = append(baseEnv(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			lockedWriter{p}.Write([]byte(line + "\n"))
			select {
			case p.lines <- line:
			default:
			}
		}
		p.waitEr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.output())
		}
	})
	return p
}

// baseEnv is the environment every process starts from: no TETHER_
// variables leak in from the developer's shell.
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

// kill stops the process hard (SIGKILL to its group) and waits for it.
func (p *proc) kill() {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// stop asks the process to end (SIGTERM) and waits.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(startTimeout):
		p.t.Errorf("%s did not stop on SIGTERM", p.name)
		p.kill()
	}
}

// waitLine waits for a stdout line matching re and returns its submatches.
func (p *proc) waitLine(re *regexp.Regexp) []string {
	p.t.Helper()
	deadline := time.After(startTimeout)
	for {
		select {
		case line := <-p.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.name, p.waitEr, re, p.output())
		case <-deadline:
			p.t.Fatalf("%s did not print %q within %s:\n%s", p.name, re, startTimeout, p.output())
		}
	}
}

// testServer is a running `tether server`.
type testServer struct {
	*proc
	url     string
	dataDir string
}

var listeningRE = regexp.MustCompile(`^Tether is listening at (\S+)`)

// startServer starts a server on a free loopback port with a fresh data
// directory, unless the options name others.
func startServer(t testing.TB, args ...string) *testServer {
	t.Helper()
	dataDir := t.TempDir()
	return startServerAt(t, dataDir, "127.0.0.1:0", args...)
}

func startServerAt(t testing.TB, dataDir, addr string, args ...string) *testServer {
	t.Helper()
	// A STUN port of its own, so that tests never collide on 3478.
	all := append([]string{"server", "--http-address", addr, "--data-dir", dataDir, "--derp-server-stun-addresses", "127.0.0.1:0"}, args...)
	p := start(t, "server", nil, all...)
	m := p.waitLine(listeningRE)
	return &testServer{proc: p, url: m[1], dataDir: dataDir}
}

// user is a CLI user with a config directory of their own.
type user struct {
	t         testing.TB
	configDir string
	env       []string
}

func newUser(t testing.TB) *user {
	dir := t.TempDir()
	return &user{t: t, configDir: dir, env: []string{"TETHER_CONFIG_DIR=" + dir}}
}

// result is what a finished CLI command printed.
type result struct {
	stdout, stderr string
	code           int
}

// run runs a CLI command to completion.
func (u *user) run(args ...string) result {
	u.t.Helper()
	return u.runInput("", args...)
}

func (u *user) runInput(stdin string, args ...string) result {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tetherBin, args...)
	cmd.Env = append(baseEnv(), u.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		u.t.Fatalf("tether %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		u.t.Fatalf("tether %s did not finish within %s", strings.Join(args, " "), commandTimeout)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// must runs a command that must succeed and returns its stdout.
func (u *user) must(args ...string) string {
	u.t.Helper()
	r := u.run(args...)
	if r.code != 0 {
		u.t.Fatalf("tether %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail and returns its stderr.
func (u *user) fails(args ...string) string {
	u.t.Helper()
	r := u.run(args...)
	if r.code == 0 {
		u.t.Fatalf("tether %s succeeded, want failure\nstdout: %s", strings.Join(args, " "), r.stdout)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		u.t.Fatalf("tether %s printed a stack trace:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r.stderr
}

// token returns the session token the user's CLI saved.
func (u *user) token() string {
	b, err := os.ReadFile(filepath.Join(u.configDir, "session"))
	if err != nil {
		u.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// admin logs in a fresh user as the server's first admin.
func admin(t testing.TB, srv *testServer) *user {
	t.Helper()
	u := newUser(t)
	u.must("login", srv.url, "--first-user-username", "alice", "--first-user-email", "alice@example.com", "--first-user-password", "correct-horse")
	return u
}

// member creates a member with the admin's CLI and logs them in.
func member(t testing.TB, srv *testServer, adm *user, name string) *user {
	t.Helper()
	adm.must("users", "create", "--username", name, "--email", name+"@example.com", "--password", name+"-password")
	u := newUser(t)
	u.must("login", srv.url, "--username", name, "--password", name+"-password")
	return u
}

type workspaceJSON struct {
	Name        string     `json:"name"`
	Owner       string     `json:"owner"`
	AgentStatus string     `json:"agent_status"`
	LastSeen    *time.Time `json:"last_seen"`
}

func (u *user) workspaces() []workspaceJSON {
	u.t.Helper()
	var ws []workspaceJSON
	out := u.must("list", "--output", "json")
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		u.t.Fatalf("list --output json: %v\n%s", err, out)
	}
	return ws
}

// createWorkspace creates a workspace and returns its agent token and URL.
func (u *user) createWorkspace(name string, extra ...string) (token, agentURL string) {
	u.t.Helper()
	out := u.must(append([]string{"create", name, "--output", "json"}, extra...)...)
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

// startAgent runs `tether agent` with a token.
func startAgent(t testing.TB, url, token string) *proc {
	return start(t, "agent", []string{"TETHER_AGENT_TOKEN=" + token}, "agent", "--url", url)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentStatus returns the named workspace's agent status as u sees it.
func (u *user) agentStatus(name string) string {
	for _, w := range u.workspaces() {
		if w.Name == name {
			return w.AgentStatus
		}
	}
	u.t.Fatalf("workspace %s not listed", name)
	return ""
}

// api sends a raw request and returns the status and body.
func api(t testing.TB, method, url, token string, body io.Reader, header ...string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Tether-Session-Token", token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
