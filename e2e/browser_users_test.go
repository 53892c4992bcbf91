package e2e

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

// The dashboard lists every workspace, however many pages the API takes
// (100 a page by default).
func TestBrowserListsEveryPage(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t, "--max-workspaces-per-user", "0")
	u := here.Admin(t, srv.URL)
	const n = 105
	for i := range n {
		body := strings.NewReader(fmt.Sprintf(`{"name":"w%03d"}`, i))
		if code, b := api(t, "POST", srv.URL+"/api/v2/workspaces", u.Token(), body, "Content-Type", "application/json"); code != http.StatusCreated {
			t.Fatalf("create w%03d: %d %s", i, code, b)
		}
	}
	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	p.waitText("every workspace's row", `String(document.querySelectorAll("tr.ws-row").length)`,
		func(s string) bool { return s == strconv.Itoa(n) })
	p.waitText("the last workspace's row", statusBadge(fmt.Sprintf("alice/w%03d", n-1)), func(s string) bool { return s != "" })
}

// A web terminal whose user is suspended stops, saying why, instead of
// retrying into the sign-in page.
func TestBrowserTerminalSaysAccessRevoked(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, adm, "bob")
	token, agentURL := bob.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return bob.AgentStatus("dev") == "connected" })

	p := b.tab("bob")
	p.signIn(srv.URL, "bob", "bob-password")
	p.navigate(srv.URL + "/@bob/dev/terminal")
	// Connected: the status line hides. (Not waiting for the shell, which
	// may take long to start on a busy machine.)
	p.waitText("the terminal to connect", `document.querySelector(".terminal-status")?.hidden ? "connected" : ""`,
		func(s string) bool { return s == "connected" })

	adm.Must("users", "suspend", "bob")
	status := `(() => { const s = document.querySelector(".terminal-status"); return s && !s.hidden ? s.innerText : ""; })()`
	p.waitContains("the terminal to say why it ended", status, "Your account was suspended")
	p.waitContains("the reason on the screen", terminalRows, "[your account was suspended]")
	if path := p.location().Path; path != "/@bob/dev/terminal" {
		t.Errorf("the page went to %s; want it to stay on the terminal with the reason", path)
	}
	p.screenshot("revoked")
}
