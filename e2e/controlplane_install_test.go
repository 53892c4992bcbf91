package e2e

// Getting the agent into a workspace: the one-liner `tether create`
// prints, run as a user would on a fresh machine.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
)

// freshMachine is a HOME of its own with a plain PATH, where the one-liner
// runs in sh (dash on Debian).
type freshMachine struct {
	t    *testing.T
	home string
}

func newFreshMachine(t *testing.T) *freshMachine {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (.ci/run installs it)")
	}
	m := &freshMachine{t: t, home: t.TempDir()}
	t.Cleanup(m.stopAgent)
	return m
}

// run runs command with sh -c and returns its output and exit code.
func (m *freshMachine) run(command string) (string, int) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(m.t.Context(), harness.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	// A fresh machine: no TETHER_ variable, no tether on PATH.
	cmd.Env = []string{"HOME=" + m.home, "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		m.t.Fatalf("sh -c %s: did not finish:\n%s", command, out.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		m.t.Fatalf("sh -c %s: %v", command, err)
	}
	return out.String(), code
}

func (m *freshMachine) bin() string { return filepath.Join(m.home, ".local", "bin", "tether") }

func (m *freshMachine) agentPID() int {
	b, err := os.ReadFile(filepath.Join(m.home, ".local", "state", "tether", "agent.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (m *freshMachine) stopAgent() {
	if pid := m.agentPID(); pid > 0 {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestInstallOneLiner: `tether create` prints a one-liner; run on a fresh
// machine, it installs the agent from the server and starts it, the
// workspace becomes connected and reachable, and the token shows on no
// command line.
func TestInstallOneLiner(t *testing.T) {
	m := newFreshMachine(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)

	var out tether.CreateWorkspaceOutput
	if err := json.Unmarshal([]byte(adm.Must("create", "box", "--output", "json")), &out); err != nil {
		t.Fatal(err)
	}
	want := "curl -fsSL " + srv.URL + "/install.sh | TETHER_AGENT_TOKEN=" + out.AgentToken + " sh"
	if out.InstallCommand != want {
		t.Fatalf("install_command = %q, want %q", out.InstallCommand, want)
	}
	if human := adm.Must("create", "other"); !strings.Contains(human, "curl -fsSL "+srv.URL+"/install.sh | TETHER_AGENT_TOKEN=") {
		t.Errorf("tether create does not print the one-liner:\n%s", human)
	}

	log, code := m.run(out.InstallCommand)
	if code != 0 {
		t.Fatalf("the one-liner failed (exit %d):\n%s", code, log)
	}
	if !strings.Contains(log, "the agent is running") {
		t.Errorf("the one-liner did not say the agent runs:\n%s", log)
	}
	harness.WaitFor(t, harness.StatusTimeout, "the installed agent to connect", func() bool {
		return adm.AgentStatus("box") == tether.AgentConnected
	})

	pid := m.agentPID()
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil || exe != m.bin() {
		t.Errorf("the agent (pid %d) runs %q (%v), want the installed %s", pid, exe, err, m.bin())
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(out.AgentToken)) {
		t.Errorf("the agent's command line shows its token: %q", cmdline)
	}
	if got := string(bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '})); got != m.bin()+" agent" {
		t.Errorf("the agent's command line = %q, want %q", got, m.bin()+" agent")
	}

	// The installed agent serves the workspace.
	if got := adm.Must("ssh", "box", "--", "echo", "installed"); strings.TrimSpace(got) != "installed" {
		t.Errorf("tether ssh box = %q", got)
	}
}

// TestInstallRefusesTamperedBinary: a binary changed on its way (here by a
// proxy in front of the server, the URL a template gives its agents) is
// refused with a clear message, and nothing is installed or started.
func TestInstallRefusesTamperedBinary(t *testing.T) {
	m := newFreshMachine(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)

	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if strings.HasPrefix(r.Request.URL.Path, "/bin/") && !strings.HasSuffix(r.Request.URL.Path, ".sha256") {
			r.Body = &flipByte{r: r.Body, at: 1 << 20}
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	tpl := filepath.Join(t.TempDir(), "front.yaml")
	if err := os.WriteFile(tpl, []byte("name: front\nagent_url: "+front.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adm.Must("templates", "push", "-f", tpl)
	var out tether.CreateWorkspaceOutput
	if err := json.Unmarshal([]byte(adm.Must("create", "box", "--template", "front", "--output", "json")), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.InstallCommand, "curl -fsSL "+front.URL+"/install.sh ") {
		t.Fatalf("install_command = %q, want it to fetch from the template's agent_url %s", out.InstallCommand, front.URL)
	}

	log, code := m.run(out.InstallCommand)
	if code != 1 || !strings.Contains(log, "checksum mismatch for tether-"+runtime.GOOS+"-"+runtime.GOARCH) || !strings.Contains(log, "nothing was installed") {
		t.Fatalf("the one-liner with a tampered binary: exit %d, want 1 with a checksum mismatch:\n%s", code, log)
	}
	if _, err := os.Stat(m.bin()); err == nil {
		t.Errorf("a tampered binary was installed at %s", m.bin())
	}
	if pid := m.agentPID(); pid != 0 {
		t.Errorf("an agent was started (pid %d)", pid)
	}
}

// flipByte flips one bit of the byte at offset at of what r reads.
type flipByte struct {
	r   io.ReadCloser
	at  int64
	off int64
}

func (f *flipByte) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		p[i] ^= 1
	}
	f.off += int64(n)
	return n, err
}

func (f *flipByte) Close() error { return f.r.Close() }

// TestStartupScript: a template's startup script runs once the agent is
// connected; its owner sees how it went in `tether list` and reads its
// output; other members see nothing of it.
func TestStartupScript(t *testing.T) {
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, adm, "bob")

	tpl := filepath.Join(t.TempDir(), "scripted.yaml")
	yaml := "name: scripted\nstartup_script: |\n  echo \"setting up $TETHER_WORKSPACE in $PWD\"\n  echo 'no such package' >&2\n  exit 3\nstartup_script_timeout: 1m\n"
	if err := os.WriteFile(tpl, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	adm.Must("templates", "push", "-f", tpl)
	token, agentURL := adm.CreateWorkspace("box", "--template", "scripted")
	state := t.TempDir()
	here.StartAgent(t, agentURL, token, "XDG_STATE_HOME="+state)

	var st *tether.StartupScriptStatus
	harness.WaitFor(t, harness.StatusTimeout, "the startup script to finish", func() bool {
		var list []tether.Workspace
		if err := json.Unmarshal([]byte(adm.Must("list", "--output", "json")), &list); err != nil {
			t.Fatal(err)
		}
		for _, w := range list {
			if w.Name == "box" && w.StartupScript != nil && w.StartupScript.FinishedAt != nil {
				st = w.StartupScript
			}
		}
		return st != nil
	})
	if st.Status != tether.StartupScriptFailed || st.ExitCode == nil || *st.ExitCode != 3 {
		t.Fatalf("startup_script = %+v, want failed with exit 3", st)
	}
	if table := adm.Must("list"); !strings.Contains(table, "STARTUP") || !strings.Contains(table, "failed (exit 3)") {
		t.Errorf("tether list does not show the startup script's failure:\n%s", table)
	}

	status, body := api(t, "GET", srv.URL+"/api/v2/workspaces/me/box/startup-script", adm.Token(), nil)
	var res tether.StartupScriptResult
	if err := json.Unmarshal(body, &res); status != 200 || err != nil {
		t.Fatalf("GET startup-script: %d %s", status, body)
	}
	// The agent runs it in the home directory of the user it runs as.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if want := "setting up box in " + me.HomeDir + "\nno such package\n"; res.Output != want {
		t.Errorf("output = %q, want %q", res.Output, want)
	}
	if logged, err := os.ReadFile(filepath.Join(state, "tether", "startup-script.log")); err != nil || string(logged) != res.Output || res.LogPath != filepath.Join(state, "tether", "startup-script.log") {
		t.Errorf("log file %s: %q, %v; want the output", res.LogPath, logged, err)
	}
	if status, _ := api(t, "GET", srv.URL+"/api/v2/workspaces/alice/box/startup-script", bob.Token(), nil); status != http.StatusNotFound {
		t.Errorf("another member reads the startup script: %d, want 404", status)
	}
}
