package e2e

// The CLI's edges as users meet them with the real binary: what the
// environment may change, version and completion, a second server on one
// data directory, and Ctrl-C while a command waits.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/tetherdev/tether/internal/harness"
	"golang.org/x/sys/unix"
)

// TestEnvironmentIsScopedToCommands: the variables the issue saw leak,
// set in the user's shell, change nothing in commands they were not meant
// for.
func TestEnvironmentIsScopedToCommands(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	u.Env = append(u.Env, "TETHER_USERNAME=mallory", "TETHER_YES=1", "TETHER_LOG_LEVEL=debug", "TETHER_PASSWORD=not-this-one")
	if out := u.Must("users", "create", "--username", "bob", "--email", "bob@example.com", "--password", "bob-password"); !strings.Contains(out, "bob") {
		t.Errorf("users create: %q", out)
	}
	if stderr := u.Fails("delete", "dev"); !strings.Contains(stderr, "pass --yes") {
		t.Errorf("TETHER_YES confirmed a delete: %q", stderr)
	}
	if u.AgentStatus("dev") == "" {
		t.Fatal("the workspace is gone")
	}
	r := u.Run("ping", "dev", "-n", "1")
	if r.Code != 0 || strings.Contains(r.Stderr, "level=DEBUG") || strings.Contains(r.Stderr, "level=INFO") {
		t.Errorf("TETHER_LOG_LEVEL of the server reached ping: exit %d\n%s", r.Code, harness.Tail(r.Stderr, 10))
	}
	// A scoped variable does reach its own command.
	u.Env = append(u.Env, "TETHER_PING_LOG_LEVEL=debug")
	if r := u.Run("ping", "dev", "-n", "1"); !strings.Contains(r.Stderr, "level=DEBUG") {
		t.Errorf("TETHER_PING_LOG_LEVEL=debug: no debug log:\n%s", harness.Tail(r.Stderr, 10))
	}
}

func TestVersionAndCompletion(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	var v struct {
		Version, Commit, GoVersion string
		OS                         string `json:"os"`
	}
	if err := json.Unmarshal([]byte(u.Must("version", "--output", "json")), &v); err != nil || v.Version == "" || v.OS == "" {
		t.Errorf("version --output json: %+v, %v", v, err)
	}
	if out := u.Must("version"); !strings.HasPrefix(out, "tether "+v.Version+"\n") || !strings.Contains(out, "commit:") {
		t.Errorf("version:\n%s", out)
	}
	for shell, want := range map[string]string{"bash": "__start_tether", "zsh": "#compdef tether", "fish": "complete -c tether", "powershell": "Register-ArgumentCompleter"} {
		if out := u.Must("completion", shell); !strings.Contains(out, want) {
			t.Errorf("completion %s has no %q", shell, want)
		}
	}
	if stderr := u.Fails("completion", "tcsh"); !strings.Contains(stderr, "tcsh") {
		t.Errorf("completion tcsh: %q", stderr)
	}
	// What the shell scripts run: workspace names come from the server.
	if out := u.Must("__complete", "ssh", "d"); !strings.Contains(out, "dev\tconnected") {
		t.Errorf("completing `tether ssh d`: %q", out)
	}
	if out := u.Must("__complete", "ping", "alice/"); !strings.Contains(out, "alice/dev") {
		t.Errorf("completing `tether ping alice/`: %q", out)
	}
	// Silent and quick when the server is gone.
	env.Server.Stop()
	start := time.Now()
	// (Cobra always ends with a note of the directive on stderr.)
	if r := u.Run("__complete", "ssh", ""); r.Code != 0 || strings.Contains(r.Stdout, "dev") || strings.Contains(r.Stderr, "rror") {
		t.Errorf("completion without a server: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("completion without a server took %s", d)
	}
}

// TestSecondServerOnDataDir: a second server on a data directory in use
// is refused, naming the first; it used to start and take over the --dev
// agent's token.
func TestSecondServerOnDataDir(t *testing.T) {
	first := here.StartServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), harness.CommandTimeout)
	defer cancel()
	cmd := here.Cmd(ctx, nil, "server", "--data-dir", first.DataDir, "--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "another tether server (pid ") ||
		!strings.Contains(string(out), "is using --data-dir "+first.DataDir) {
		t.Errorf("second server: %v\n%s", err, out)
	}
	// The first goes on serving; once stopped, its directory is free.
	first.Stop()
	first.Restart()
}

// runInTerminal runs the user's command in a pseudo-terminal, as a person
// would, and returns the terminal, its output so far and the command's end.
func runInTerminal(t *testing.T, u *harness.User, args ...string) (*exec.Cmd, *os.File, *lockedBuffer, <-chan error) {
	t.Helper()
	cmd := exec.Command(here.Bin, args...)
	cmd.Env = append(harness.CleanEnv(), u.Env...)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); ptmx.Close() })
	out := &lockedBuffer{}
	go io.Copy(out, ptmx)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, ptmx, out, done
}

// TestCtrlCWhileWaiting: Ctrl-C at a prompt, or while waiting for an
// agent, ends the command at once with 130 and no error.
func TestCtrlCWhileWaiting(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	u.CreateWorkspace("idle") // no agent will come
	for _, tc := range []struct {
		name  string
		args  []string
		after string // what the command prints while it waits
	}{
		{"at a prompt", []string{"delete", "dev"}, "Type its name to confirm"},
		{"waiting for the agent", []string{"ssh", "idle", "--", "true"}, "Waiting for the agent"},
		{"at a password prompt", []string{"login", env.Server.URL, "--username", "alice"}, "Password: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, ptmx, out, done := runInTerminal(t, u, tc.args...)
			harness.WaitFor(t, harness.CommandTimeout, "the command to wait", func() bool { return strings.Contains(out.String(), tc.after) })
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case err := <-done:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 130 || strings.Contains(out.String(), "error") {
					t.Errorf("after Ctrl-C: %v\n%s", err, out.String())
				}
				// A password prompt turns echo off; Ctrl-C must turn it
				// back on. (Master and slave share the terminal's modes.)
				if tios, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS); err != nil || tios.Lflag&unix.ECHO == 0 {
					t.Errorf("the terminal's echo is off after Ctrl-C (%v)", err)
				}
			case <-time.After(harness.CommandTimeout):
				t.Fatalf("still running %s after Ctrl-C:\n%s", harness.CommandTimeout, out.String())
			}
		})
	}
	if u.AgentStatus("dev") == "" {
		t.Error("Ctrl-C at the prompt deleted the workspace")
	}
}

// TestLoginHints: a login URL with a wrong path says in one line that it
// is not a Tether server; one without a scheme (https://) against a plain
// HTTP server suggests http://.
func TestLoginHints(t *testing.T) {
	srv := here.StartServer(t)
	u := here.NewUser(t)
	stderr := u.Fails("login", srv.URL+"/wrong/path", "--username", "alice", "--password", "x")
	if !strings.Contains(stderr, srv.URL+"/wrong/path is not a Tether server") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("wrong path: %q", stderr)
	}
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	stderr = u.Fails("login", hostPort, "--username", "alice", "--password", "x")
	if !strings.Contains(stderr, "run `tether login http://"+hostPort+"`") {
		t.Errorf("no scheme: %q", stderr)
	}
}
