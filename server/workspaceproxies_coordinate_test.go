package server

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/store"
)

// mintGrant signs in with session at the primary, asks it for a hand-off
// to target (a page on a proxy), and returns the token the primary hands
// over.
func mintGrant(t testing.TB, f *fixture, session, target string) string {
	t.Helper()
	r := get("/api/v2/workspaceproxies/auth-redirect?redirect_uri=" + url.QueryEscape(target))(f)
	r.header = http.Header{}
	if session != "" {
		r.header.Set(tether.SessionTokenHeader, session)
	}
	resp, body := f.do(r)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Path != ProxyAuthPath {
		t.Fatalf("hand-off to %s: %d to %v: %.200s", target, resp.StatusCode, loc, body)
	}
	return loc.Query().Get(HandoffParam)
}

// coordinateAsProxy asks the primary, with a proxy's token, to coordinate
// a tunnel to agent, showing grants; it returns the status.
func coordinateAsProxy(f *fixture, proxyToken string, agent uuid.UUID, grants ...string) int {
	r := ws("/api/v2/workspaceproxies/me/coordinate?version=" + tether.CoordinateProtocolVersion + "&id=" + uuid.NewString() + "&agent=" + agent.String())(f)
	r.header = http.Header{tether.ProxyTokenHeader: {proxyToken}}
	for _, g := range grants {
		r.header.Add(tether.ProxyGrantHeader, g)
	}
	resp, _ := f.do(r)
	return resp.StatusCode
}

// TestProxyCoordinateNeedsGrant attacks the primary as a workspace proxy
// (or whoever holds its token): its token alone opens no tunnel; a grant
// opens a tunnel to its own workspace only, at its own proxy only, while
// the session and access behind it last.
func TestProxyCoordinateNeedsGrant(t *testing.T) {
	f := accessFixture(t)
	ctx := context.Background()
	a, err := f.db.WorkspaceProxyByTokenHash(ctx, hashOf(f.proxyToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.WorkspaceProxyHeartbeat(ctx, a.ID, proxyHeartbeatAt(f, proxyWildcard)); err != nil {
		t.Fatal(err)
	}
	// Proxy b, at a host of its own.
	b, bToken := f.addProxy("edge2")
	if err := f.db.WorkspaceProxyHeartbeat(ctx, b.ID, store.ProxyHeartbeat{URL: "http://edge2.example.com", Version: "v", At: f.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	f.s.refreshProxies(ctx)
	other, _ := f.addWorkspace(f.owner, f.name("ws"), f.ws.TemplateID)

	terminal := "http://" + proxyHost + "/@bob/dev/terminal"
	ownerSession := f.session(f.owner, time.Hour)
	grant := mintGrant(t, f, ownerSession, terminal)
	const ok, refused = http.StatusSwitchingProtocols, http.StatusForbidden

	t.Run("cases", func(t *testing.T) {
		priv, err := f.s.handoffKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, otherKey, _ := ed25519.GenerateKey(nil)
		now := f.clock.Now()
		forged := handoff.Claims{ID: "f1", Proxy: a.ID, IssuedAt: now.Unix(), Expires: now.Add(time.Minute).Unix(),
			User: f.owner.ID, Session: hashOf(ownerSession), Workspace: f.ws.ID, WorkspaceName: "dev", OwnerID: f.owner.ID, Owner: "bob",
			Scope: handoff.ScopeTerminal, Generation: proxyTokenGeneration(a)}
		mod := func(m func(*handoff.Claims)) handoff.Claims { c := forged; m(&c); return c }
		for _, tc := range []struct {
			name   string
			token  string
			agent  uuid.UUID
			grants []string
			want   int
		}{
			{"the owner's terminal grant", f.proxyToken, f.ws.ID, []string{grant}, ok},
			{"a grant signed by the primary's key by hand, as the primary would", f.proxyToken, f.ws.ID, []string{signed(t, priv, forged)}, ok},
			{"no grant", f.proxyToken, f.ws.ID, nil, refused},
			{"a grant for another workspace", f.proxyToken, other.ID, []string{grant}, refused},
			{"a grant for another agent ID than it names", f.proxyToken, uuid.New(), []string{grant}, refused},
			{"garbage", f.proxyToken, f.ws.ID, []string{"not-a-grant"}, refused},
			{"signed by another key", f.proxyToken, f.ws.ID, []string{signed(t, otherKey, forged)}, refused},
			{"a grant with no generation", f.proxyToken, f.ws.ID, []string{signed(t, priv, mod(func(c *handoff.Claims) { c.Generation = "" }))}, refused},
			{"a grant naming another user than its session's", f.proxyToken, f.ws.ID, []string{signed(t, priv, mod(func(c *handoff.Claims) { c.User = f.admin.ID }))}, refused},
			{"a terminal grant with no session", f.proxyToken, f.ws.ID, []string{signed(t, priv, mod(func(c *handoff.Claims) { c.Session = "" }))}, refused},
			{"a grant past its life", f.proxyToken, f.ws.ID, []string{signed(t, priv, mod(func(c *handoff.Claims) {
				c.IssuedAt, c.Expires = now.Add(-proxyGrantLifetime).Unix(), now.Add(-proxyGrantLifetime+time.Minute).Unix()
			}))}, refused},
			{"too many grants", f.proxyToken, f.ws.ID, func() []string {
				g := make([]string, tether.MaxProxyGrantsShown+1)
				for i := range g {
					g[i] = grant
				}
				return g
			}(), http.StatusBadRequest},
			{"a dead grant beside a live one", f.proxyToken, f.ws.ID, []string{"not-a-grant", grant}, ok},
			{"the grant shown by another proxy", bToken, f.ws.ID, []string{grant}, refused},
			{"no proxy token", "", f.ws.ID, []string{grant}, http.StatusUnauthorized},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if got := coordinateAsProxy(f, tc.token, tc.agent, tc.grants...); got != tc.want {
					t.Errorf("status %d, want %d", got, tc.want)
				}
			})
		}
	})

	t.Run("a grant for proxy b replayed at proxy a", func(t *testing.T) {
		bGrant := mintGrant(t, f, ownerSession, "http://edge2.example.com/@bob/dev/terminal")
		if got := coordinateAsProxy(f, bToken, f.ws.ID, bGrant); got != ok {
			t.Fatalf("at proxy b: %d, want %d", got, ok)
		}
		if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, bGrant); got != refused {
			t.Errorf("at proxy a: %d, want %d", got, refused)
		}
	})

	t.Run("apps", func(t *testing.T) {
		memberSession := f.session(f.other, time.Hour)
		for _, tc := range []struct {
			name    string
			session string
			target  string
		}{
			{"the owner's path app", ownerSession, "http://" + proxyHost + "/@bob/dev/apps/web/"},
			{"the owner's subdomain app", ownerSession, "http://sub--dev--bob.apps.edge.example.com/"},
			{"another member's authenticated app", memberSession, "http://auth--dev--bob.apps.edge.example.com/"},
			{"a public app, signed out", "", "http://pub--dev--bob.apps.edge.example.com/"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				g := mintGrant(t, f, tc.session, tc.target)
				if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); got != ok {
					t.Errorf("to its workspace: %d, want %d", got, ok)
				}
				if got := coordinateAsProxy(f, f.proxyToken, other.ID, g); got != refused {
					t.Errorf("to another workspace of the same owner: %d, want %d", got, refused)
				}
			})
		}
	})

	t.Run("a grant whose session ended", func(t *testing.T) {
		s := f.session(f.owner, time.Hour)
		g := mintGrant(t, f, s, terminal)
		if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); got != ok {
			t.Fatalf("before signing out: %d", got)
		}
		if err := f.db.DeleteSession(ctx, hashOf(s)); err != nil {
			t.Fatal(err)
		}
		if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); got != refused {
			t.Errorf("after signing out: %d, want %d", got, refused)
		}
	})

	t.Run("an admin's grant for another's terminal, after the admin is demoted", func(t *testing.T) {
		boss := f.addUser(f.name("boss"), tether.RoleAdmin, "pw")
		s := f.session(boss, time.Hour)
		g := mintGrant(t, f, s, terminal)
		if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); got != ok {
			t.Fatalf("as admin: %d", got)
		}
		if err := f.db.SetUserRole(ctx, boss.ID, tether.RoleMember); err != nil {
			t.Fatal(err)
		}
		if got := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); got != refused {
			t.Errorf("demoted: %d, want %d", got, refused)
		}
	})

	t.Run("a public app's grant once the app is no longer public", func(t *testing.T) {
		tmpl, err := f.db.UpsertTemplate(ctx, store.Template{ID: uuid.New(), Name: f.name("t"), CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now(),
			Apps: []tether.App{{Name: "pub", URL: "http://127.0.0.1:1", Subdomain: true, Share: tether.SharePublic}}})
		if err != nil {
			t.Fatal(err)
		}
		ws, _ := f.addWorkspace(f.owner, f.name("pubws"), tmpl.ID)
		g := mintGrant(t, f, "", "http://pub--"+ws.Name+"--bob.apps.edge.example.com/")
		if got := coordinateAsProxy(f, f.proxyToken, ws.ID, g); got != ok {
			t.Fatalf("public: %d", got)
		}
		tmpl.Apps[0].Share = tether.ShareOwner
		if _, err := f.db.UpsertTemplate(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
		if got := coordinateAsProxy(f, f.proxyToken, ws.ID, g); got != refused {
			t.Errorf("owner-only now: %d, want %d", got, refused)
		}
	})

	t.Run("a grant replayed after the proxy's token was regenerated", func(t *testing.T) {
		g := mintGrant(t, f, ownerSession, terminal)
		r := post("/api/v2/workspaceproxies/edge/token", "")(f)
		f.sign(&r, admin, formHeader)
		resp, body := f.do(r)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("regenerate: %d %s", resp.StatusCode, body)
		}
		var got tether.WorkspaceProxyTokenResponse
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if st := coordinateAsProxy(f, f.proxyToken, f.ws.ID, g); st != http.StatusUnauthorized {
			t.Errorf("the old token: %d, want 401", st)
		}
		if st := coordinateAsProxy(f, got.Token, f.ws.ID, g); st != refused {
			t.Errorf("the new token with a grant from before: %d, want %d", st, refused)
		}
		if st := coordinateAsProxy(f, got.Token, f.ws.ID, mintGrant(t, f, ownerSession, terminal)); st != ok {
			t.Errorf("the new token with a new grant: %d, want %d", st, ok)
		}
		f.proxyToken = got.Token
	})
}

// TestProxyCoordinateRevokedWithGrant: a stream that rests on a grant is
// revoked once the grant's session ends.
func TestProxyCoordinateRevokedWithGrant(t *testing.T) {
	f := accessFixture(t)
	s := f.session(f.owner, time.Hour)
	g := mintGrant(t, f, s, "http://"+proxyHost+"/@bob/dev/terminal")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	u := strings.Replace(f.hs.URL, "http", "ws", 1) + "/api/v2/workspaceproxies/me/coordinate?version=" + tether.CoordinateProtocolVersion +
		"&id=" + uuid.NewString() + "&agent=" + f.ws.ID.String()
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Host: accessHost,
		HTTPHeader: http.Header{tether.ProxyTokenHeader: {f.proxyToken}, tether.ProxyGrantHeader: {g}}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := f.db.DeleteSession(context.Background(), hashOf(s)); err != nil {
		t.Fatal(err)
	}
	// Read (and drop) what the coordinator sends until the primary
	// closes the stream; the grant's recheck is within seconds.
	for {
		_, _, err := conn.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusCode(tether.CloseAccessRevoked) {
			t.Fatalf("stream ended with %v, want revoked (%d)", err, tether.CloseAccessRevoked)
		}
		return
	}
}

// TestProxyShowsItsGrants: the proxy's tunnel to a workspace's agent is
// coordinated on the grants its users redeemed for that workspace, and on
// nothing else: before any, the primary refuses it for good.
func TestProxyShowsItsGrants(t *testing.T) {
	pf := newProxyFixture(t)
	// The proxy reaches the fixture's primary on its listener.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, pf.fixture.hs.Listener.Addr().String())
	}
	t.Cleanup(tr.CloseIdleConnections)
	pf.p.httpClient = &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	if conn, err := pf.p.dialCoordinate(ctx, uuid.New(), pf.ws.ID); err == nil {
		conn.CloseNow()
		t.Fatal("coordinated a tunnel with no grant")
	} else if !strings.Contains(err.Error(), "403") {
		t.Fatalf("without a grant: %v, want the primary's 403", err)
	}

	s := pf.session(pf.owner, time.Hour)
	r := get("/api/v2/workspaceproxies/auth-redirect?redirect_uri=" + url.QueryEscape("http://"+proxyHost+"/@bob/dev/terminal"))(pf.fixture)
	r.header = http.Header{tether.SessionTokenHeader: {s}}
	resp, _ := pf.do(r)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if c := grantCookie(pf.visit(t, loc)); c == nil {
		t.Fatal("redeeming the hand-off set no grant")
	}
	if got := pf.p.grants.forWorkspace(uuid.New()); len(got) != 0 {
		t.Errorf("grants shown for another workspace: %d", len(got))
	}
	conn, err := pf.p.dialCoordinate(ctx, uuid.New(), pf.ws.ID)
	if err != nil {
		t.Fatalf("with the owner's grant: %v", err)
	}
	conn.CloseNow()
}
