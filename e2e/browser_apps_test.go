package e2e

import (
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

// appMarker is what the test app's page says, so that a page that shows it
// is the app and nothing else.
const appMarker = "tether-test-app-page"

// testApp plays a web app inside a workspace: the agent runs on this
// machine, so a server on 127.0.0.1 is "inside" it. Its page shows the
// path and the Cookie header it was sent, it sets a cookie of its own, and
// it remembers every request's headers.
type testApp struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []http.Header
}

func startTestApp(t *testing.T) *testApp {
	t.Helper()
	a := &testApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return // the agent's health check, not a browser
		}
		a.mu.Lock()
		a.requests = append(a.requests, r.Header.Clone())
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "app_own", Value: "from-the-app", Path: "/"})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Test app</title><h1 id="marker">%s</h1><p id="path">%s</p><pre id="cookie">%s</pre>`,
			appMarker, html.EscapeString(r.URL.Path), html.EscapeString(r.Header.Get("Cookie")))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// received returns how many requests the app has had, and all of their
// headers as text.
func (a *testApp) received() (int, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	for _, h := range a.requests {
		h.Write(&b)
		b.WriteString("\n")
	}
	return len(a.requests), b.String()
}

// appHrefs reads the dashboard's app links of a workspace: name → href.
func appHrefs(p *tab, workspace string) map[string]string {
	p.t.Helper()
	expr := fmt.Sprintf(`[...document.querySelectorAll('tr.ws-row[data-workspace=%s] a.app-link')].map((a) => a.textContent + " " + a.href).join("\n")`,
		jsString(workspace))
	text := p.waitText("the workspace's app links", expr, func(s string) bool { return strings.Count(s, "\n") >= 2 })
	links := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		name, href, _ := strings.Cut(line, " ")
		links[name] = href
	}
	return links
}

// markerText is the expression of the test app's marker, "" elsewhere.
const markerText = `document.getElementById("marker")?.textContent ?? ""`

// TestBrowserApps opens a workspace's web apps: path-based and
// subdomain-based for their owner, refused to another user, and a public
// one without signing in. The apps never see Tether's own cookies.
func TestBrowserApps(t *testing.T) {
	b := newBrowser(t)
	app := startTestApp(t)
	srv := here.StartServer(t, "--wildcard-access-url", "*.localhost")
	alice := here.Admin(t, srv.URL)
	tmpl := filepath.Join(t.TempDir(), "webdev.yaml")
	err := os.WriteFile(tmpl, []byte(fmt.Sprintf(`name: webdev
apps:
  - {name: site, url: %[1]q, share: owner, healthcheck: {url: "%[1]s/healthz", interval: 1s}}
  - {name: sub, url: %[1]q, subdomain: true, share: owner}
  - {name: pub, url: %[1]q, subdomain: true, share: public}
`, app.srv.URL)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	alice.Must("templates", "push", "-f", tmpl)
	token, agentURL := alice.CreateWorkspace("dev", "--template", "webdev")
	here.StartAgent(t, agentURL, token)
	here.Member(t, srv.URL, alice, "bob")

	// The owner sees the apps on the dashboard, with links of each kind.
	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	p.waitText("the workspace row, connected", statusBadge("alice/dev"), func(s string) bool { return s == "Connected" })
	links := appHrefs(p, "alice/dev")
	port := strings.TrimPrefix(srv.URL[strings.LastIndex(srv.URL, ":"):], ":")
	want := map[string]string{
		"site": srv.URL + "/@alice/dev/apps/site/",
		"sub":  "http://sub--dev--alice.localhost:" + port + "/",
		"pub":  "http://pub--dev--alice.localhost:" + port + "/",
	}
	for name, href := range want {
		if links[name] != href {
			t.Errorf("the dashboard links app %s to %q, want %q", name, links[name], href)
		}
	}
	// Health shows for the app with a health check, and nothing for the
	// others.
	healthExpr := `[...document.querySelectorAll('tr.ws-row[data-workspace="alice/dev"] li.app')].map((li) => li.querySelector(".app-link").textContent + ":" + (li.querySelector(".badge")?.textContent ?? "none")).join(" ")`
	p.waitText("the apps' health", healthExpr, func(s string) bool { return s == "site:Healthy sub:none pub:none" })
	p.screenshot("dashboard-apps")
	var session string
	for _, c := range p.cookies(srv.URL) {
		if c.Name == "tether_session" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("the browser holds no tether_session cookie after signing in")
	}

	// A path-based app, on the dashboard's own origin: the browser sends
	// the session cookie with it, and the server must not pass it on.
	p.navigate(want["site"])
	p.waitText("the path-based app's page", markerText, func(s string) bool { return s == appMarker })
	p.reload() // now with the app's own cookie, which must get through
	p.waitContains("the app's own cookie, sent back", `document.getElementById("cookie")?.textContent`, "app_own=from-the-app")
	if got := p.text(`document.getElementById("path")?.textContent`); got != "/" {
		t.Errorf("the path-based app was asked for %q, want /", got)
	}
	p.screenshot("path-app")

	// A subdomain app: an origin of its own, signed in through the access
	// URL's redirect, with a host-only token cookie.
	p.navigate(want["sub"])
	p.waitText("the subdomain app's page", markerText, func(s string) bool { return s == appMarker })
	if loc := p.location(); loc.Host != "sub--dev--alice.localhost:"+port || loc.Path != "/" {
		t.Errorf("the subdomain app ended up at %s, want http://sub--dev--alice.localhost:%s/", loc, port)
	}
	var appToken bool
	for _, c := range p.cookies(want["sub"]) {
		if c.Name == "tether_app_token" {
			appToken = true
			if c.Domain != "sub--dev--alice.localhost" || !c.HTTPOnly {
				t.Errorf("the app token cookie has domain %q and HttpOnly %v; want host-only for the app's host, HttpOnly", c.Domain, c.HTTPOnly)
			}
		}
	}
	if !appToken {
		t.Error("the subdomain app's host holds no tether_app_token cookie")
	}
	p.screenshot("subdomain-app")

	// Another user is refused the owner's apps, and the app never hears
	// of it.
	before, _ := app.received()
	q := b.tab("bob")
	q.signIn(srv.URL, "bob", "bob-password")
	for _, name := range []string{"site", "sub"} {
		q.navigate(want[name])
		refusal := q.waitText("the refusal of app "+name,
			`(() => { const m = document.querySelector("main.error-page"); return m ? m.dataset.status + " " + m.innerText : document.body?.innerText; })()`,
			func(s string) bool { return s != "" })
		if strings.Contains(refusal, appMarker) {
			t.Errorf("bob, a member, was shown alice's owner-only app %s", name)
		} else if !strings.HasPrefix(refusal, "404 ") || !strings.Contains(refusal, "not found") {
			t.Errorf("bob opening alice's app %s sees %q, want a not found page", name, truncate(refusal, 300))
		}
	}
	if after, _ := app.received(); after != before {
		t.Errorf("alice's app got %d requests while bob tried to open it", after-before)
	}
	q.screenshot("member-refused")

	// A public app opens for anyone; an owner-only one sends them to sign
	// in.
	anon := b.tab("anonymous")
	anon.navigate(want["pub"])
	anon.waitText("the public app's page", markerText, func(s string) bool { return s == appMarker })
	anon.navigate(want["site"])
	anon.waitPath("/login")
	if redirect := anon.location().Query().Get("redirect"); redirect != "/@alice/dev/apps/site/" {
		t.Errorf("the sign-in page for an owner-only app comes back to %q, want the app", redirect)
	}

	// Across all of it, the app never saw Tether's credentials.
	n, headers := app.received()
	if n == 0 {
		t.Fatal("the app got no requests")
	}
	for _, secret := range []string{"tether_session", "tether_app_token", session} {
		if strings.Contains(headers, secret) {
			t.Errorf("the app received Tether's credential %q:\n%s", truncate(secret, 12), headers)
		}
	}
	if !t.Failed() {
		t.Logf("the app served %d requests, none with Tether's cookies", n)
	}
}

// TestPathAppsOpenOnlyForTheirOwner: a path-based app shares the
// dashboard's origin, so even when shared it opens only for its owner —
// not for an admin, another member or an anonymous visitor — unless the
// server accepts the risk with --dangerous-allow-path-app-sharing.
func TestPathAppsOpenOnlyForTheirOwner(t *testing.T) {
	app := startTestApp(t)
	for _, tc := range []struct {
		name       string
		serverArgs []string
		wantCode   int
	}{
		{"default", nil, http.StatusForbidden},
		{"dangerous flag", []string{"--dangerous-allow-path-app-sharing"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := here.StartServer(t, tc.serverArgs...)
			adm := here.Admin(t, srv.URL)
			bob := here.Member(t, srv.URL, adm, "bob")
			tmpl := filepath.Join(t.TempDir(), "t.yaml")
			os.WriteFile(tmpl, []byte(fmt.Sprintf("name: shared\napps:\n  - {name: pub, url: %q, share: public}\n", app.srv.URL)), 0o644)
			adm.Must("templates", "push", "-f", tmpl)
			token, agentURL := bob.CreateWorkspace("dev", "--template", "shared")
			here.StartAgent(t, agentURL, token)
			harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return bob.AgentStatus("dev") == "connected" })
			url := srv.URL + "/@bob/dev/apps/pub/"
			if code, body := api(t, "GET", url, bob.Token(), nil); code != http.StatusOK {
				t.Errorf("owner: %d %s", code, body)
			}
			for who, token := range map[string]string{"admin": adm.Token(), "anonymous": ""} {
				code, body := api(t, "GET", url, token, nil)
				if code != tc.wantCode {
					t.Errorf("%s: %d %s, want %d", who, code, body, tc.wantCode)
				}
				if tc.wantCode == http.StatusForbidden && !strings.Contains(string(body), "--dangerous-allow-path-app-sharing") {
					t.Errorf("%s: the refusal does not say what to do: %s", who, body)
				}
			}
		})
	}
}
