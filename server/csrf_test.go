package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tetherdev/tether"
)

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		base, header string
		want         bool
	}{
		{"https://tether.example.com", "https://tether.example.com", true},
		{"https://tether.example.com", "https://TETHER.example.com", true},
		{"https://tether.example.com:443", "https://tether.example.com", true},
		{"https://tether.example.com", "https://tether.example.com:443", true},
		{"http://tether.example.com:3000", "http://tether.example.com:3000", true},
		{"http://[::1]:3000", "http://[::1]:3000", true},
		{"https://Tether.Example.com/", "https://tether.example.com", true},
		{"https://tether.example.com", "http://tether.example.com", false},
		{"https://tether.example.com", "https://tether.example.com:8443", false},
		{"https://tether.example.com", "https://web--dev--bob.apps.example.com", false},
		{"https://tether.example.com", "https://example.com", false},
		{"https://tether.example.com", "https://tether.example.com.evil.example", false},
		{"https://tether.example.com", "https://user@tether.example.com", false},
		{"https://tether.example.com", "https://tether.example.com/path", false},
		{"https://tether.example.com", "null", false},
		{"https://tether.example.com", "", false},
		{"https://tether.example.com", "tether.example.com", false},
	}
	for _, tc := range tests {
		base, _ := url.Parse(tc.base)
		if got := sameOrigin(tc.header, base); got != tc.want {
			t.Errorf("sameOrigin(%q, %s) = %v, want %v", tc.header, tc.base, got, tc.want)
		}
	}
}

// TestWebSocketOrigin proves what the server relies on besides its own
// check: coder/websocket's Accept, as the server's handlers call it,
// refuses a handshake whose Origin is not the request's host, a same-site
// subdomain app's included. Browsers always send Origin with WebSockets.
func TestWebSocketOrigin(t *testing.T) {
	for _, opts := range []*websocket.AcceptOptions{
		nil, // the coordinate and agent WebSockets
		{CompressionMode: websocket.CompressionContextTakeover}, // the terminal
	} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, opts)
			if err == nil {
				c.CloseNow()
			}
		}))
		f := &fixture{t: t, hs: hs}
		for _, tc := range []struct {
			origin string
			want   int
		}{
			{"", http.StatusSwitchingProtocols},
			{"http://" + accessHost, http.StatusSwitchingProtocols},
			{"http://web--dev--bob.apps.example.com", http.StatusForbidden},
			{"https://evil.example", http.StatusForbidden},
			{"null", http.StatusForbidden},
		} {
			r := req{method: "GET", path: "/", websocket: true, header: http.Header{}}
			if tc.origin != "" {
				r.header.Set("Origin", tc.origin)
			}
			if resp, body := f.do(r); resp.StatusCode != tc.want {
				t.Errorf("options %+v, Origin %q: %d, want %d: %s", opts, tc.origin, resp.StatusCode, tc.want, body)
			}
		}
		hs.Close()
	}
}

// TestWebSocketHijackFromApp: a subdomain app's page opening the
// dashboard's WebSockets with the browser's cookie is refused before any
// handler runs; so is one with a token header, by coder/websocket.
func TestWebSocketHijackFromApp(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	appOrigin := "http://pub--dev--bob.apps.example.com"
	coordinate := "/api/v2/workspaces/bob/dev/coordinate?version=" + tether.CoordinateProtocolVersion + "&id=" + uuid.NewString()
	for _, path := range []string{coordinate, "/api/v2/workspaces/bob/dev/pty?reconnect=x"} {
		for _, fm := range []form{formCookie, formHeader} {
			r := req{method: "GET", path: path, websocket: true}
			f.sign(&r, owner, fm)
			r.header.Set("Origin", appOrigin)
			if resp, body := f.do(r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s with the owner's %s from %s: %d, want 403: %s", path, fm, appOrigin, resp.StatusCode, body)
			}
		}
	}
	// From the dashboard itself, the cookie opens it.
	r := req{method: "GET", path: coordinate, websocket: true}
	f.sign(&r, owner, formCookie)
	if resp, body := f.do(r); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("coordinate from the dashboard: %d, want 101: %s", resp.StatusCode, body)
	}
}

// TestSessionCookie: the dashboard's cookie is host-only, and on https a
// __Host- cookie, so that app hosts can neither read nor replace it.
func TestSessionCookie(t *testing.T) {
	for _, tc := range []struct {
		scheme, name string
		secure       bool
	}{
		{"https", tether.SessionCookieSecure, true},
		{"http", tether.SessionCookie, false},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{scheme: tc.scheme})
			r := post("/api/v2/users/login", `{"login":"bob","password":"`+ownerPassword+`"}`)(f)
			r.header.Set("Origin", origin(f.access))
			resp, body := f.do(r)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login: %d %s", resp.StatusCode, body)
			}
			lines := resp.Header.Values("Set-Cookie")
			if len(lines) != 1 {
				t.Fatalf("login set %q, want one cookie", lines)
			}
			c, err := http.ParseSetCookie(lines[0])
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != tc.name || c.Domain != "" || c.Path != "/" || c.Secure != tc.secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("login set %q; want %s, host-only (no Domain), Path=/, Secure %v, HttpOnly, SameSite=Lax", lines[0], tc.name, tc.secure)
			}
			if strings.Contains(strings.ToLower(lines[0]), "domain=") {
				t.Errorf("the session cookie names a domain: %q", lines[0])
			}

			me := func(cookies ...*http.Cookie) (int, string) {
				resp, body := f.do(req{method: "GET", path: "/api/v2/users/me", cookies: cookies})
				return resp.StatusCode, body
			}
			if code, body := me(c); code != http.StatusOK {
				t.Errorf("the cookie does not sign in: %d %s", code, body)
			}
			// A cookie tossed by an app host for the parent domain comes
			// along with the real one, first or second: the server takes
			// neither, rather than maybe the attacker's.
			tossed := &http.Cookie{Name: tc.name, Value: f.session(f.other, time.Hour)}
			for _, pair := range [][]*http.Cookie{{c, tossed}, {tossed, c}} {
				if code, body := me(pair...); code != http.StatusUnauthorized || !strings.Contains(body, "two") {
					t.Errorf("two session cookies: %d %s, want 401 saying so", code, body)
				}
			}
			if tc.secure {
				// On https only the __Host- cookie counts: a plain one can
				// be set by any host of the site.
				plain := &http.Cookie{Name: tether.SessionCookie, Value: c.Value}
				if code, _ := me(plain); code != http.StatusUnauthorized {
					t.Errorf("a plain %s cookie signed in on https: %d", tether.SessionCookie, code)
				}
			}

			r = req{method: "POST", path: "/api/v2/users/logout", cookies: []*http.Cookie{c}, header: http.Header{"Origin": {origin(f.access)}}}
			resp, body = f.do(r)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("logout: %d %s", resp.StatusCode, body)
			}
			cleared, err := http.ParseSetCookie(resp.Header.Get("Set-Cookie"))
			if err != nil || cleared.Name != tc.name || cleared.MaxAge >= 0 || cleared.Secure != tc.secure || cleared.Path != "/" {
				t.Errorf("logout set %q, want %s cleared with the same attributes", resp.Header.Get("Set-Cookie"), tc.name)
			}
			if code, _ := me(c); code != http.StatusUnauthorized {
				t.Errorf("the cookie still signs in after logout: %d", code)
			}
		})
	}
}
