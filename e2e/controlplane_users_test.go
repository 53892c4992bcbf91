package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether/internal/harness"
)

// webTerminal is a raw web terminal WebSocket, as the dashboard opens it.
type webTerminal struct {
	t    *testing.T
	conn *websocket.Conn
	end  chan error // why reading ended
}

func openWebTerminal(t *testing.T, srv *harness.Server, token, owner, ws string) *webTerminal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/v2/workspaces/" + owner + "/" + ws + "/pty?reconnect=" + t.Name()
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Tether-Session-Token": {token}}})
	if err != nil {
		t.Fatalf("open the web terminal: %v", err)
	}
	wt := &webTerminal{t: t, conn: conn, end: make(chan error, 1)}
	go func() {
		for {
			if _, _, err := conn.Read(context.Background()); err != nil {
				wt.end <- err
				return
			}
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return wt
}

// alive checks that the terminal is open: it answers a ping. (Its shell
// may take long to start on a busy machine: a login shell runs the
// user's profile. The test needs the socket, not the shell.)
func (wt *webTerminal) alive() {
	wt.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	if err := wt.conn.Ping(ctx); err != nil {
		wt.t.Fatalf("the web terminal does not answer: %v", err)
	}
}

// awaitClose waits for the server to close the terminal with the access
// revoked status and a reason that says want.
func (wt *webTerminal) awaitClose(want string) {
	wt.t.Helper()
	select {
	case err := <-wt.end:
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4403 || !strings.Contains(ce.Reason, want) {
			wt.t.Errorf("the web terminal ended with %v; want status 4403 saying %q", err, want)
		}
	case <-time.After(harness.StatusTimeout):
		wt.t.Errorf("the web terminal is still open %s after the change; want it closed saying %q", harness.StatusTimeout, want)
	}
}

// awaitExit waits for a long-running command to exit non-zero with want on
// its output.
func awaitExit(t *testing.T, p *harness.Proc, want string) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(harness.StatusTimeout):
		t.Fatalf("%s is still running %s after the change; want it to exit saying %q:\n%s", p.Name, harness.StatusTimeout, want, p.Output())
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() == 0 || !strings.Contains(p.Output(), want) {
		t.Errorf("%s ended with %v; want a non-zero exit saying %q:\n%s", p.Name, p.Err(), want, p.Output())
	}
	if strings.Contains(p.Output(), "goroutine ") || strings.Contains(p.Output(), "panic") {
		t.Errorf("%s printed a stack trace:\n%s", p.Name, p.Output())
	}
}

// Suspending a member ends, within seconds and with a clear message, their
// open `tether ssh`, their port forward (and the connection through it)
// and their web terminal; their API calls are refused; unsuspending lets
// them back in.
func TestSuspendEndsEverythingAtOnce(t *testing.T) {
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, adm, "bob")
	token, agentURL := bob.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return bob.AgentStatus("dev") == "connected" })

	ssh := here.Start(t, "ssh", bob.Env, "ssh", "dev", "--", "echo ready; sleep 600")
	ssh.WaitLine(regexp.MustCompile(`^ready$`))

	remote, local := upperServer(t), freePort(t, "tcp")
	pf := here.Start(t, "port-forward", bob.Env, "port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", local, remote))
	pf.WaitLine(regexp.MustCompile(`Press Ctrl\+C`))
	fwd, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	fwd.SetDeadline(time.Now().Add(harness.CommandTimeout))
	rd := bufio.NewReader(fwd)
	fmt.Fprintln(fwd, "hello")
	if line, err := rd.ReadString('\n'); line != "HELLO\n" {
		t.Fatalf("through the forward: %q, %v", line, err)
	}

	term := openWebTerminal(t, srv, bob.Token(), "me", "dev")
	term.alive()

	adm.Must("users", "suspend", "bob")

	awaitExit(t, ssh, "your account was suspended")
	awaitExit(t, pf, "your account was suspended")
	term.awaitClose("your account was suspended")
	fwd.SetDeadline(time.Now().Add(harness.StatusTimeout))
	fmt.Fprintln(fwd, "still there?")
	if line, err := rd.ReadString('\n'); err == nil {
		t.Errorf("the forwarded connection still answers after the suspension: %q", line)
	}

	if stderr := bob.Fails("list"); !strings.Contains(stderr, "tether login") {
		t.Errorf("a suspended member's list: %q", stderr)
	}
	if code, body := api(t, "GET", srv.URL+"/api/v2/users/me", bob.Token(), nil); code != http.StatusUnauthorized {
		t.Errorf("a suspended member's API call: %d %s", code, body)
	}
	if stderr := here.NewUser(t).Fails("login", srv.URL, "--username", "bob", "--password", "bob-password"); !strings.Contains(stderr, "suspended") {
		t.Errorf("a suspended member signing in: %q", stderr)
	}
	if out := adm.Must("users", "list"); !regexp.MustCompile(`(?m)^bob\s+bob@example\.com\s+member\s+suspended\s`).MatchString(out) {
		t.Errorf("users list does not show bob suspended:\n%s", out)
	}

	adm.Must("users", "unsuspend", "bob")
	bob.Must("login", srv.URL, "--username", "bob", "--password", "bob-password")
	if out := bob.Must("ssh", "dev", "--", "echo", "back"); out != "back\n" {
		t.Errorf("after unsuspending: %q", out)
	}
}

// Roles, passwords, signing out and deleting, through the CLI.
func TestUserLifecycleCLI(t *testing.T) {
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, adm, "bob")
	bob.CreateWorkspace("dev")
	adm.CreateWorkspace("mine")

	// set-role: bob sees every workspace while an admin.
	if out := adm.Must("users", "set-role", "bob", "admin"); !strings.Contains(out, "bob is now admin") {
		t.Errorf("set-role: %q", out)
	}
	if ws := bob.Workspaces(); len(ws) != 2 {
		t.Errorf("bob as admin lists %d workspaces, want 2", len(ws))
	}
	adm.Must("users", "set-role", "bob", "member")
	if ws := bob.Workspaces(); len(ws) != 1 {
		t.Errorf("bob as member again lists %d workspaces, want 1", len(ws))
	}

	// The last admin stays, and does not lock themselves out.
	if stderr := adm.Fails("users", "set-role", "alice", "member"); !strings.Contains(stderr, "--yes") {
		t.Errorf("demoting yourself without confirmation: %q", stderr)
	}
	if stderr := adm.Fails("users", "set-role", "alice", "member", "--yes"); !strings.Contains(stderr, "last active admin") {
		t.Errorf("demoting the last admin: %q", stderr)
	}
	if stderr := adm.Fails("users", "suspend", "alice"); !strings.Contains(stderr, "cannot suspend yourself") {
		t.Errorf("suspending yourself: %q", stderr)
	}
	if stderr := bob.Fails("users", "suspend", "alice"); !strings.Contains(stderr, "only admins") {
		t.Errorf("a member suspending: %q", stderr)
	}
	if stderr := bob.Fails("users", "delete", "alice", "--yes"); !strings.Contains(stderr, "only admins") {
		t.Errorf("a member deleting: %q", stderr)
	}

	// reset-password on oneself ends the other sessions, keeps this one.
	laptop := here.NewUser(t)
	laptop.Must("login", srv.URL, "--username", "bob", "--password", "bob-password")
	if stderr := bob.Fails("users", "reset-password", "--old-password", "bob-password", "--password", "password123"); !strings.Contains(stderr, "most common") {
		t.Errorf("a common new password: %q", stderr)
	}
	if stderr := bob.Fails("users", "reset-password", "--old-password", "wrong-one", "--password", "a-better-passphrase"); !strings.Contains(stderr, "not correct") {
		t.Errorf("a wrong current password: %q", stderr)
	}
	bob.Must("users", "reset-password", "--old-password", "bob-password", "--password", "a-better-passphrase")
	bob.Must("list")
	laptop.Fails("list")

	// An admin's reset ends them all.
	adm.Must("users", "reset-password", "bob", "--password", "reset-by-alice")
	bob.Fails("list")
	bob.Must("login", srv.URL, "--username", "bob", "--password", "reset-by-alice")

	// logout --all ends every session of the user, and only theirs.
	laptop.Must("login", srv.URL, "--username", "bob", "--password", "reset-by-alice")
	if out := laptop.Must("logout", "--all"); !strings.Contains(out, "2 sessions ended") {
		t.Errorf("logout --all: %q", out)
	}
	bob.Fails("list")
	laptop.Fails("list")
	adm.Must("list")
	bob.Must("login", srv.URL, "--username", "bob", "--password", "reset-by-alice")
	if out := adm.Must("users", "logout", "bob"); !strings.Contains(out, "1 session") {
		t.Errorf("users logout: %q", out)
	}
	bob.Fails("list")

	// delete asks, naming the workspaces that go with the user.
	if stderr := adm.Fails("users", "delete", "bob"); !strings.Contains(stderr, "--yes") || !strings.Contains(stderr, "1 workspace (dev)") {
		t.Errorf("delete without confirmation: %q", stderr)
	}
	if out := adm.Must("users", "delete", "bob", "--yes"); !strings.Contains(out, "Deleted user bob and their 1 workspace (dev)") {
		t.Errorf("delete: %q", out)
	}
	if stderr := here.NewUser(t).Fails("login", srv.URL, "--username", "bob", "--password", "reset-by-alice"); !strings.Contains(stderr, "incorrect") {
		t.Errorf("a deleted user signing in: %q", stderr)
	}
	if ws := adm.Workspaces(); len(ws) != 1 || ws[0].Name != "mine" {
		t.Errorf("workspaces after deleting bob: %+v", ws)
	}
	if stderr := adm.Fails("users", "create", "--username", "me", "--email", "me@example.com", "--password", "a-fine-passphrase"); !strings.Contains(stderr, "reserved") {
		t.Errorf("a user named me: %q", stderr)
	}
}

// `tether list` pages through every workspace, and each user may own only
// so many (TETHER_MAX_WORKSPACES_PER_USER).
func TestListPagesAndWorkspaceLimit(t *testing.T) {
	const limit = 130
	srv := here.StartServerWith(t, harness.ServerOptions{Env: []string{fmt.Sprintf("TETHER_MAX_WORKSPACES_PER_USER=%d", limit)}})
	adm := here.Admin(t, srv.URL)
	for i := range limit - 1 {
		body := strings.NewReader(fmt.Sprintf(`{"name":"w%03d"}`, i))
		if code, b := api(t, "POST", srv.URL+"/api/v2/workspaces", adm.Token(), body, "Content-Type", "application/json"); code != http.StatusCreated {
			t.Fatalf("create w%03d: %d %s", i, code, b)
		}
	}
	adm.Must("create", "last")
	ws := adm.Workspaces()
	if len(ws) != limit || ws[0].Name != "last" || ws[1].Name != "w000" || ws[limit-1].Name != fmt.Sprintf("w%03d", limit-2) {
		t.Errorf("list shows %d workspaces, want all %d in order", len(ws), limit)
	}
	code, body := api(t, "GET", srv.URL+"/api/v2/workspaces", adm.Token(), nil)
	var page []json.RawMessage
	if json.Unmarshal(body, &page) != nil || code != 200 || len(page) != 100 {
		t.Errorf("one API call returns %d workspaces, want a page of 100", len(page))
	}
	if stderr := adm.Fails("create", "one-more"); !strings.Contains(stderr, "--max-workspaces-per-user") {
		t.Errorf("creating past the limit: %q", stderr)
	}
}
