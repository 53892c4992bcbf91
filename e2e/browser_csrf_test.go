package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

// evilAppPage is a member's app that tries to act as whoever opens it: a
// no-cors POST to the dashboard's API, which needs no CORS permission and
// carries the visitor's cookies when the dashboard is same-site.
const evilAppPage = `<!doctype html><title>Evil app</title><p id="state">sending</p>
<script>
fetch(%s + "/api/v2/users", {
  method: "POST", mode: "no-cors", credentials: "include",
  body: new Blob([JSON.stringify({username: "mallory2", email: "mallory2@example.com", password: "mallory-password", role: "admin"})]),
}).then(() => { document.getElementById("state").textContent = "sent"; },
        (e) => { document.getElementById("state").textContent = "failed: " + e; });
</script>`

// TestBrowserCSRFFromSubdomainApp replays issue 10's critical finding in
// Chromium: a member's public subdomain app, same-site with the dashboard
// (tether.example.localhost and *.apps.example.localhost, both loopback in
// Chromium), is opened by a signed-in admin and posts to /api/v2/users. No
// user may be created.
func TestBrowserCSRFFromSubdomainApp(t *testing.T) {
	b := newBrowser(t)
	port := strconv.Itoa(freePort(t, "tcp"))
	dashboard := "http://tether.example.localhost:" + port
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, evilAppPage, jsString(dashboard))
	}))
	t.Cleanup(app.Close)

	srv := here.StartServerWith(t, harness.ServerOptions{Addr: "127.0.0.1:" + port,
		Args: []string{"--access-url", dashboard, "--wildcard-access-url", "*.apps.example.localhost"}})
	// Go resolves no *.localhost names: the CLI and the agent use the
	// loopback address, the browser the dashboard's name.
	srv.URL = "http://127.0.0.1:" + port
	alice := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, alice, "bob")
	tmpl := filepath.Join(t.TempDir(), "evil.yaml")
	if err := os.WriteFile(tmpl, []byte(fmt.Sprintf("name: evil\napps:\n  - {name: evil, url: %q, subdomain: true, share: public}\n", app.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	alice.Must("templates", "push", "-f", tmpl)
	token, _ := bob.CreateWorkspace("dev", "--template", "evil")
	here.StartAgent(t, srv.URL, token)
	harness.WaitFor(t, harness.StatusTimeout, "bob's agent connected", func() bool { return bob.AgentStatus("dev") == "connected" })

	p := b.tab("alice")
	p.signIn(dashboard, "alice", "correct-horse")
	p.navigate("http://evil--dev--bob.apps.example.localhost:" + port + "/")
	state := p.waitText("the app's request to end", `document.getElementById("state")?.textContent ?? ""`,
		func(s string) bool { return s != "" && s != "sending" })
	t.Logf("the app's fetch: %s", state)

	if out := alice.Must("users", "list"); strings.Contains(out, "mallory2") {
		t.Errorf("a member's app created an admin through the admin's browser:\n%s", out)
	}
}

// TestBrowserSignInRedirectStaysOnSite: the sign-in page's redirect
// parameter can only lead to a page of the dashboard, however it is
// spelled (issue 10's open redirect: the browser read "/.//evil/…" as a
// protocol-relative URL).
func TestBrowserSignInRedirectStaysOnSite(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	here.Admin(t, srv.URL)
	dashboard, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	// *.localhost is loopback in Chromium: a redirect that leaves the
	// site lands on this same server under another name, which the test
	// sees in the page's location.
	evil := "evil.localhost:" + dashboard.Port()
	p := b.tab("alice")
	signedIn := false
	for _, redirect := range []string{
		"/.//" + evil + "/@x/y/terminal",
		"/%2e//" + evil + "/@x/y/terminal",
		"/a/..//" + evil + "/@x/y/terminal",
		"/\\" + evil + "/@x/y/terminal",
		"/\t/" + evil + "/@x/y/terminal",
		"//" + evil + "/@x/y/terminal",
		"http://" + evil + "/@x/y/terminal",
	} {
		p.navigate(srv.URL + "/login?redirect=" + url.QueryEscape(redirect))
		if !signedIn {
			// The first time through the form; then the page sees the
			// session and goes on by itself.
			p.typeInto(`input[name=login]`, "alice")
			p.typeInto(`input[name=password]`, "correct-horse")
			p.click(`button[type=submit]`)
			signedIn = true
		}
		where := p.waitText("the page after signing in", `location.host + " " + location.pathname`,
			func(s string) bool { return !strings.HasSuffix(s, " /login") })
		if host, _, _ := strings.Cut(where, " "); host != dashboard.Host {
			t.Errorf("redirect %q led the browser to %s, off the dashboard (%s)", redirect, where, dashboard.Host)
			p.navigate(srv.URL + "/")
		}
	}
}
