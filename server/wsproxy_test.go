package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/store"
)

func hashOf(token string) string { return store.HashToken(token) }

func proxyHeartbeatAt(f *fixture, wildcard string) store.ProxyHeartbeat {
	return store.ProxyHeartbeat{URL: "http://" + proxyHost, WildcardURL: wildcard, Version: "v", At: f.clock.Now()}
}

// proxyFixture is the access fixture's primary with its proxy "edge"
// (at proxyHost, subdomain apps under *.apps.edge.example.com) served in
// process: the primary mints hand-off tokens, the proxy redeems them.
type proxyFixture struct {
	*fixture
	p   *Proxy
	hs  *httptest.Server
	pid uuid.UUID
}

const proxyWildcard = "*.apps.edge.example.com"

func newProxyFixture(t *testing.T) *proxyFixture {
	f := accessFixture(t)
	p, err := f.db.WorkspaceProxyByTokenHash(context.Background(), hashOf(f.proxyToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.WorkspaceProxyHeartbeat(context.Background(), p.ID, proxyHeartbeatAt(f, proxyWildcard)); err != nil {
		t.Fatal(err)
	}
	f.s.refreshProxies(context.Background())
	priv, err := f.s.handoffKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "terminal page") })
	px, err := NewProxy(ProxyOptions{
		PrimaryURL:        f.access,
		Token:             f.proxyToken,
		AccessURL:         &url.URL{Scheme: "http", Host: proxyHost},
		WildcardAccessURL: proxyWildcard,
		Site:              site,
		Now:               f.clock.Now,
		Registered: tether.ProxyHeartbeatResponse{ID: p.ID.String(), HandoffKey: priv.Public().(ed25519.PublicKey),
			DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(px.Handler())
	t.Cleanup(func() {
		hs.Close()
		px.Close()
	})
	return &proxyFixture{fixture: f, p: px, hs: hs, pid: p.ID}
}

// mint asks the primary, as id, for a hand-off to target, and returns the
// proxy URL it redirects to ("" if it does not hand over).
func (pf *proxyFixture) mint(t *testing.T, id identity, target string) (int, *url.URL) {
	t.Helper()
	r := get("/api/v2/workspaceproxies/auth-redirect?redirect_uri=" + url.QueryEscape(target))(pf.fixture)
	if id != anonymous {
		pf.sign(&r, id, formHeader)
	}
	resp, _ := pf.do(r)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	return resp.StatusCode, loc
}

// visit requests u (a proxy URL) at the in-process proxy, with cookies.
func (pf *proxyFixture) visit(t *testing.T, u *url.URL, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", pf.hs.URL+u.RequestURI(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = u.Host
	req.Header.Set("Accept", "text/html")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func grantCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == proxyGrantCookie {
			return c
		}
	}
	return nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestProxyHandoff: what the primary hands over, and what the proxy
// accepts, case by case.
func TestProxyHandoff(t *testing.T) {
	pf := newProxyFixture(t)
	terminal := "http://" + proxyHost + "/@bob/dev/terminal"
	subApp := "http://sub--dev--bob.apps.edge.example.com/x?y=1"

	t.Run("the primary decides", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			id     identity
			target string
			want   int
			toHost string // where a 303 goes
		}{
			{"owner's terminal", owner, terminal, http.StatusSeeOther, proxyHost},
			{"admin to another's terminal", admin, terminal, http.StatusSeeOther, proxyHost},
			{"member to another's terminal", member, terminal, http.StatusNotFound, ""},
			{"nobody to a terminal: sign in", anonymous, terminal, http.StatusSeeOther, ""},
			{"owner's subdomain app", owner, subApp, http.StatusSeeOther, "sub--dev--bob.apps.edge.example.com"},
			{"member to another's subdomain app", member, subApp, http.StatusNotFound, ""},
			{"nobody to a public app", anonymous, "http://pub--dev--bob.apps.edge.example.com/", http.StatusSeeOther, "pub--dev--bob.apps.edge.example.com"},
			{"member to another's path app", member, "http://" + proxyHost + "/@bob/dev/apps/web/", http.StatusNotFound, ""},
			{"a host that is no proxy", owner, "http://evil.example.com/@bob/dev/terminal", http.StatusBadRequest, ""},
			{"a page that is neither", owner, "http://" + proxyHost + "/api/v2/users", http.StatusBadRequest, ""},
			{"another scheme", owner, "https://" + proxyHost + "/@bob/dev/terminal", http.StatusBadRequest, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, loc := pf.mint(t, tc.id, tc.target)
				if st != tc.want {
					t.Fatalf("status %d, want %d (to %s)", st, tc.want, loc)
				}
				if st != http.StatusSeeOther {
					return
				}
				if tc.toHost == "" {
					if loc.Path != "/login" || loc.Host != "" {
						t.Errorf("sent to %s, want the primary's sign-in", loc)
					}
					return
				}
				if loc.Host != tc.toHost || loc.Path != ProxyAuthPath || loc.Query().Get(HandoffParam) == "" {
					t.Errorf("sent to %s, want %s%s with a token", loc, tc.toHost, ProxyAuthPath)
				}
			})
		}
	})

	t.Run("the proxy redeems once, on the host named", func(t *testing.T) {
		_, loc := pf.mint(t, owner, terminal)
		resp := pf.visit(t, loc)
		c := grantCookie(resp)
		if resp.StatusCode != http.StatusSeeOther || c == nil || !c.HttpOnly || resp.Header.Get("Location") != "http://"+proxyHost+"/@bob/dev/terminal" {
			t.Fatalf("redeeming: %d to %q, cookie %v", resp.StatusCode, resp.Header.Get("Location"), c)
		}
		if resp := pf.visit(t, mustURL(terminal), c); resp.StatusCode != http.StatusOK {
			t.Errorf("the terminal page with the grant: %d", resp.StatusCode)
		}
		// The grant is for this workspace's terminal only.
		if resp := pf.visit(t, mustURL("http://"+proxyHost+"/@bob/other/terminal"), c); resp.StatusCode != http.StatusSeeOther ||
			!strings.HasPrefix(resp.Header.Get("Location"), pf.access.String()+"/api/v2/workspaceproxies/auth-redirect") {
			t.Errorf("another workspace's terminal with the grant: %d to %s, want to the primary", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp := pf.visit(t, mustURL("http://"+proxyHost+"/@bob/dev/apps/web/"), c); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("an app with a terminal's grant: %d, want to the primary", resp.StatusCode)
		}
		// Replayed: refused.
		if resp := pf.visit(t, loc); resp.StatusCode != http.StatusUnauthorized || grantCookie(resp) != nil {
			t.Errorf("a replayed token: %d", resp.StatusCode)
		}
	})

	t.Run("a subdomain app's token opens its host only", func(t *testing.T) {
		_, loc := pf.mint(t, owner, subApp)
		elsewhere := *loc
		elsewhere.Host = "pub--dev--bob.apps.edge.example.com"
		if resp := pf.visit(t, &elsewhere); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the token at another app's host: %d", resp.StatusCode)
		}
		main := *loc
		main.Host = proxyHost
		if resp := pf.visit(t, &main); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the token at the proxy's own host: %d", resp.StatusCode)
		}
	})

	t.Run("the proxy refuses tokens not the primary's or not its own", func(t *testing.T) {
		_, otherKey, _ := ed25519.GenerateKey(nil)
		now := pf.clock.Now()
		good := handoff.Claims{ID: "x1", Proxy: pf.pid, IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix(),
			User: pf.owner.ID, Workspace: pf.ws.ID, WorkspaceName: "dev", OwnerID: pf.owner.ID, Owner: "bob", Scope: handoff.ScopeTerminal}
		otherProxy := good
		otherProxy.ID, otherProxy.Proxy = "x2", uuid.New()
		priv, _ := pf.s.handoffKey(context.Background())
		// The good one passes, so that the others fail for their fault.
		ok := mustURL("http://" + proxyHost + ProxyAuthPath + "?" + url.Values{HandoffParam: {signed(t, priv, good)}, "path": {"/@bob/dev/terminal"}}.Encode())
		if resp := pf.visit(t, ok); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("a good token: %d", resp.StatusCode)
		}
		for name, tok := range map[string]string{
			"signed by another key": signed(t, otherKey, good),
			"for another proxy":     signed(t, priv, otherProxy),
			"garbage":               "not-a-token",
		} {
			u := mustURL("http://" + proxyHost + ProxyAuthPath + "?" + url.Values{HandoffParam: {tok}, "path": {"/@bob/dev/terminal"}}.Encode())
			if resp := pf.visit(t, u); resp.StatusCode != http.StatusUnauthorized || grantCookie(resp) != nil {
				t.Errorf("%s: %d", name, resp.StatusCode)
			}
		}
	})

	t.Run("the page after redeeming stays on the proxy", func(t *testing.T) {
		_, loc := pf.mint(t, owner, terminal)
		q := loc.Query()
		q.Set("path", "//evil.example.com/steal")
		loc.RawQuery = q.Encode()
		resp := pf.visit(t, loc)
		if got := resp.Header.Get("Location"); !strings.HasPrefix(got, "http://"+proxyHost+"/") {
			t.Errorf("redirected to %q, want on the proxy", got)
		}
	})

	t.Run("a session that ends ends its grants", func(t *testing.T) {
		_, loc := pf.mint(t, owner, terminal)
		resp := pf.visit(t, loc)
		c := grantCookie(resp)
		if c == nil {
			t.Fatalf("redeeming: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		pf.p.grants.mu.Lock()
		g := pf.p.grants.byHash[store.HashToken(c.Value)]
		pf.p.grants.mu.Unlock()
		if g == nil || g.session == "" {
			t.Fatal("no grant with a session behind the cookie")
		}
		pf.p.grants.endSession(g.session, "signed out")
		if resp := pf.visit(t, mustURL(terminal), c); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("the terminal page after the session ended: %d, want to the primary", resp.StatusCode)
		}
	})
}

func signed(t *testing.T, k ed25519.PrivateKey, c handoff.Claims) string {
	t.Helper()
	tok, err := handoff.Sign(k, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestProxyHeartbeatEndedSessions: the primary tells a proxy which of the
// sessions it serves under have ended, and only those.
func TestProxyHeartbeatEndedSessions(t *testing.T) {
	f := accessFixture(t)
	live := hashOf(f.session(f.owner, time.Hour))
	expired := hashOf(f.session(f.owner, -time.Minute))
	unknown := hashOf("never-issued")
	r := post("/api/v2/workspaceproxies/me/heartbeat",
		fmt.Sprintf(`{"access_url":"http://%s","version":"v","sessions":[%q,%q,%q]}`, proxyHost, live, expired, unknown))(f)
	f.sign(&r, wsproxy, formHeader)
	resp, body := f.do(r)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("heartbeat: %d %s", resp.StatusCode, body)
	}
	var got tether.ProxyHeartbeatResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	ended := strings.Join(got.EndedSessions, ",")
	if strings.Contains(ended, live) || !strings.Contains(ended, expired) || !strings.Contains(ended, unknown) {
		t.Errorf("ended sessions %v: want the expired and the unknown one, not the live one", got.EndedSessions)
	}
	if got.RegionID != 10000 || got.DERPMap.Regions[10000] == nil || len(got.HandoffKey) != ed25519.PublicKeySize {
		t.Errorf("the heartbeat's answer lacks the proxy's region or the hand-off key: %s", body)
	}
}

// TestProxyAuthRedirectTargets attacks the primary's hand-off redirect:
// whatever redirect_uri says, a token goes only to a registered proxy's own
// host or one of its app hosts, over its scheme, and the page it names
// after redeeming stays on that host.
func TestProxyAuthRedirectTargets(t *testing.T) {
	pf := newProxyFixture(t)
	for _, target := range []string{
		"http://evil.example.com/@bob/dev/terminal",
		"http://edge.example.com.evil.example.com/@bob/dev/terminal",
		"http://edge.example.com@evil.example.com/@bob/dev/terminal",
		"http://evil.example.com#@edge.example.com/@bob/dev/terminal",
		"http://evil.example.com\\@edge.example.com/@bob/dev/terminal",
		"//edge.example.com/@bob/dev/terminal",
		"/@bob/dev/terminal",
		"https://edge.example.com/@bob/dev/terminal", // not the proxy's scheme
		"javascript://edge.example.com/%0aalert(1)",
		"http://sub--dev--bob.apps.evil.example.com/",
		"http://apps.edge.example.com/@bob/dev/terminal",
		"http:%2F%2Fedge.example.com/@bob/dev/terminal",
	} {
		code, loc := pf.mint(t, owner, target)
		if code == http.StatusSeeOther && loc != nil && loc.Host != "" {
			t.Errorf("redirect_uri %q: handed over to %s", target, loc)
		}
	}
	// The same page under other spellings of the proxy's host is handed
	// over to the proxy itself, never elsewhere.
	for _, target := range []string{
		"http://EDGE.example.com/@bob/dev/terminal",
		"http://edge.example.com/@bob/dev//terminal/../terminal",
		"http://edge.example.com/%40bob/dev/terminal",
	} {
		code, loc := pf.mint(t, owner, target)
		if code == http.StatusSeeOther && loc != nil && loc.Host != "" && !strings.EqualFold(loc.Host, proxyHost) {
			t.Errorf("redirect_uri %q: handed over to %s", target, loc)
		}
	}
	// After redeeming, every spelling of an off-site page lands on the proxy.
	for _, page := range []string{"//evil.example.com/x", "/\\evil.example.com/x", "/%2F%2Fevil.example.com", "https://evil.example.com/",
		"\\\\evil.example.com", "/\t/evil.example.com", "javascript:alert(1)"} {
		_, loc := pf.mint(t, owner, "http://"+proxyHost+"/@bob/dev/terminal")
		q := loc.Query()
		q.Set("path", page)
		loc.RawQuery = q.Encode()
		resp := pf.visit(t, loc)
		got, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || !strings.EqualFold(got.Host, proxyHost) || strings.HasPrefix(got.Path, "//") {
			t.Errorf("path %q: redirected to %q, want a page on the proxy", page, resp.Header.Get("Location"))
		}
	}
}
