package server

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether/store"
)

func TestInstallCommand(t *testing.T) {
	tests := []struct {
		url, token, want string
	}{
		{"https://tether.example.com", "abc_-123", "curl -fsSL https://tether.example.com/install.sh | TETHER_AGENT_TOKEN=abc_-123 sh"},
		{"https://tether.example.com/", "t", "curl -fsSL https://tether.example.com/install.sh | TETHER_AGENT_TOKEN=t sh"},
		{"http://10.0.0.5:3000/tether?x=1&y=2", "t", "curl -fsSL 'http://10.0.0.5:3000/tether?x=1&y=2/install.sh' | TETHER_AGENT_TOKEN=t sh"},
		{"https://h", "it's", `curl -fsSL https://h/install.sh | TETHER_AGENT_TOKEN='it'\''s' sh`},
	}
	for _, tt := range tests {
		if got := InstallCommand(tt.url, tt.token); got != tt.want {
			t.Errorf("InstallCommand(%q, %q) = %s, want %s", tt.url, tt.token, got, tt.want)
		}
	}
}

// TestInstallScriptURL: the script downloads from, and points the agent
// at, the known URL whose host it was fetched from; never a URL the
// request makes up.
func TestInstallScriptURL(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if _, err := f.db.UpsertTemplate(context.Background(), store.Template{ID: uuid.New(), Name: "internal",
		AgentURL: "http://tether.internal:3000/", CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{accessHost, "http://" + accessHost},
		{accessHost + ":80", "http://" + accessHost},
		{"TETHER.internal:3000", "http://tether.internal:3000"},
		{"tether.internal", "http://" + accessHost},              // another port: not the template's
		{"evil.example.com", "http://" + accessHost},             // unknown: the access URL
		{"tether.internal:3000/../evil", "http://" + accessHost}, // not a host
	}
	for _, tt := range tests {
		resp, body := f.do(req{method: "GET", path: "/install.sh", host: tt.host})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("Host %s: %d %s", tt.host, resp.StatusCode, body)
		}
		if !strings.Contains(body, "\n\tserver_url='"+tt.want+"'\n") {
			t.Errorf("Host %s: the script does not download from %s:\n%s", tt.host, tt.want, grepLine(body, "server_url="))
		}
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return "(no line with " + sub + ")"
}

// fakeAgent is what the install tests serve as the agent binary: a shell
// script that answers `agent --help`, records how it was started, says
// what the real agent says once the server accepted it, and stays up.
const fakeAgent = `#!/bin/sh
if [ "${2:-}" = --help ]; then exit 0; fi
printf '%s\n' "$@" >"$FAKE_RECORD.args"
env >"$FAKE_RECORD.env"
echo 'level=INFO msg="agent running"'
while :; do sleep 1; done
`

// installEnv is a machine to run the one-liner on: a HOME of its own, and
// a PATH whose programs the test chooses.
type installEnv struct {
	t      *testing.T
	home   string
	path   string // directory of the programs on PATH
	record string // where the fake agent records its start
}

// newInstallEnv gives the script the programs it needs, and curl and
// wget when asked.
func newInstallEnv(t *testing.T, downloaders ...string) *installEnv {
	t.Helper()
	e := &installEnv{t: t, home: t.TempDir(), path: t.TempDir()}
	e.record = filepath.Join(e.home, "fake-agent")
	for _, p := range append([]string{"sh", "uname", "mkdir", "sed", "tr", "head", "tail", "chmod", "mv", "rm", "cat", "grep",
		"sleep", "nohup", "env", "sha256sum"}, downloaders...) {
		e.addProgram(p)
	}
	return e
}

func (e *installEnv) addProgram(name string) {
	e.t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		e.t.Skipf("%s is not installed", name)
	}
	if err := os.Symlink(p, filepath.Join(e.path, name)); err != nil {
		e.t.Fatal(err)
	}
}

// fakeProgram puts a script called name first on PATH.
func (e *installEnv) fakeProgram(name, script string) {
	e.t.Helper()
	os.Remove(filepath.Join(e.path, name))
	if err := os.WriteFile(filepath.Join(e.path, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		e.t.Fatal(err)
	}
}

// run runs command in sh (dash on Debian, as on many workspaces) with the
// environment's HOME and PATH, and returns its output and exit code. It
// stops the agent the script started when the test ends.
func (e *installEnv) run(command string, env ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append([]string{"HOME=" + e.home, "PATH=" + e.path, "FAKE_RECORD=" + e.record}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	e.t.Cleanup(func() { e.stopAgent() })
	if ctx.Err() != nil {
		e.t.Fatalf("%s: timed out:\n%s", command, out.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("%s: %v", command, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), code
}

func (e *installEnv) pidFile() string {
	return filepath.Join(e.home, ".local", "state", "tether", "agent.pid")
}

func (e *installEnv) stopAgent() {
	b, err := os.ReadFile(e.pidFile())
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	os.Remove(e.pidFile())
}

// installServer is a server whose own binary is the fake agent, reached
// through a front (a template's agent_url) that can tamper with what
// passes.
type installServer struct {
	f      *fixture
	url    string // the template's agent_url: the front
	tamper atomic.Bool
}

func newInstallServer(t *testing.T) *installServer {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the fake agent stands in for the linux binary")
	}
	ownPath := filepath.Join(t.TempDir(), "tether")
	if err := os.WriteFile(ownPath, []byte(fakeAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	is := &installServer{f: newFixture(t, fixtureOptions{edit: func(o *Options) { o.AgentBinary = ownPath }})}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if is.tamper.Load() && strings.HasPrefix(r.URL.Path, "/bin/") && !strings.HasSuffix(r.URL.Path, ".sha256") {
			rec := httptest.NewRecorder()
			is.f.s.Handler().ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body[len(body)/2] ^= 1
			w.WriteHeader(rec.Code)
			w.Write(body)
			return
		}
		is.f.s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	is.url = front.URL
	if _, err := is.f.db.UpsertTemplate(context.Background(), store.Template{ID: uuid.New(), Name: "front",
		AgentURL: front.URL, CreatedAt: is.f.clock.Now(), UpdatedAt: is.f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	return is
}

func TestInstallScript(t *testing.T) {
	const token = "s3cret-agent-token"
	is := newInstallServer(t)
	tests := []struct {
		name        string
		downloaders []string
		setup       func(*installEnv)
		tamper      bool
		command     string // default: the one-liner
		env         []string
		wantCode    int
		wantOutput  string
	}{
		{name: "curl", downloaders: []string{"curl"}, wantOutput: "the agent is running (pid"},
		{name: "wget only", downloaders: []string{"wget"}, command: "wget -qO- " + is.url + "/install.sh | TETHER_AGENT_TOKEN=" + token + " sh",
			wantOutput: "the agent is running (pid"},
		{name: "tampered binary", downloaders: []string{"curl"}, tamper: true, wantCode: 1,
			wantOutput: "checksum mismatch for tether-linux-amd64: the server says " + sha256Hex([]byte(fakeAgent)) + ", the download is "},
		{name: "no token", downloaders: []string{"curl"}, command: "curl -fsSL " + is.url + "/install.sh | sh", wantCode: 1,
			wantOutput: "TETHER_AGENT_TOKEN is not set"},
		{name: "no downloader", wantCode: 1, wantOutput: "neither curl nor wget is installed"},
		{name: "another architecture", downloaders: []string{"curl"},
			setup:    func(e *installEnv) { e.fakeProgram("uname", `[ "$1" = -m ] && echo aarch64 || echo Linux`) },
			wantCode: 1, wantOutput: "HTTP 404: this server has no agent binary for linux/arm64; it has tether-linux-amd64"},
		{name: "another system", downloaders: []string{"curl"},
			setup:    func(e *installEnv) { e.fakeProgram("uname", `[ "$1" = -m ] && echo x86_64 || echo SunOS`) },
			wantCode: 1, wantOutput: "this system (SunOS) has no Tether agent"},
		{name: "server out of reach", downloaders: []string{"curl"}, wantCode: 1,
			setup: func(e *installEnv) {
				// The script arrives; the binary's server is out of reach.
				real, _ := os.Readlink(filepath.Join(e.path, "curl"))
				e.fakeProgram("curl", "case \"$*\" in */bin/*) echo 'curl: (7) Failed to connect' >&2; printf 000; exit 7 ;; esac\nexec "+real+` "$@"`)
			},
			wantOutput: "cannot download " + is.url + "/bin/tether-linux-amd64.sha256 (curl failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newInstallEnv(t, tt.downloaders...)
			if tt.setup != nil {
				tt.setup(e)
			}
			is.tamper.Store(tt.tamper)
			defer is.tamper.Store(false)
			command := tt.command
			if command == "" {
				command = InstallCommand(is.url, token)
			}
			if tt.name == "no downloader" {
				// Without curl or wget, the script arrives some other way.
				_, script := is.f.do(req{method: "GET", path: "/install.sh", host: strings.TrimPrefix(is.url, "http://")})
				command = "TETHER_AGENT_TOKEN=" + token + " sh -c " + shellQuote(script)
			}
			out, code := e.run(command, tt.env...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOutput) {
				t.Fatalf("%s: exit %d, want %d, with %q in:\n%s", command, code, tt.wantCode, tt.wantOutput, out)
			}
			bin := filepath.Join(e.home, ".local", "bin", "tether")
			if tt.wantCode != 0 {
				if _, err := os.Stat(bin); err == nil {
					t.Errorf("a failed install left %s", bin)
				}
				if entries, _ := os.ReadDir(filepath.Dir(bin)); len(entries) > 0 {
					t.Errorf("a failed install left files in %s: %v", filepath.Dir(bin), entries)
				}
				return
			}
			if b, err := os.ReadFile(bin); err != nil || string(b) != fakeAgent {
				t.Errorf("installed binary: %q, %v", b, err)
			}
			args, err := os.ReadFile(e.record + ".args")
			if err != nil {
				t.Fatalf("the agent did not start: %v\n%s", err, out)
			}
			if string(args) != "agent\n" {
				t.Errorf("agent started with arguments %q, want just agent", args)
			}
			env, _ := os.ReadFile(e.record + ".env")
			for _, want := range []string{"TETHER_AGENT_TOKEN=" + token, "TETHER_AGENT_URL=" + is.url} {
				if !strings.Contains("\n"+string(env), "\n"+want+"\n") {
					t.Errorf("the agent's environment lacks %s:\n%s", want, env)
				}
			}
		})
	}
}

// TestInstallScriptReplacesItsAgent: running the one-liner again (a new
// token, a new release) stops the agent it started before, so that the
// new one takes the workspace.
func TestInstallScriptReplacesItsAgent(t *testing.T) {
	is := newInstallServer(t)
	e := newInstallEnv(t, "curl")
	out, code := e.run(InstallCommand(is.url, "first"))
	if code != 0 {
		t.Fatalf("first install: exit %d:\n%s", code, out)
	}
	b, _ := os.ReadFile(e.pidFile())
	first, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	out, code = e.run(InstallCommand(is.url, "second"))
	if code != 0 || !strings.Contains(out, "stopping the agent started before (pid "+strconv.Itoa(first)+")") {
		t.Fatalf("second install: exit %d, without stopping pid %d:\n%s", code, first, out)
	}
	if err := syscall.Kill(first, 0); err == nil {
		t.Errorf("the first agent (pid %d) still runs", first)
	}
}
