package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// The fixture's subdomain apps: bob's owner-only, authenticated and public
// apps of workspace dev.
const (
	subHost  = "sub--dev--bob.apps.example.com"
	authHost = "auth--dev--bob.apps.example.com"
	pubHost  = "pub--dev--bob.apps.example.com"
)

// authRedirect asks the dashboard, with a session's cookie, for the
// one-time link to an app host, and returns it.
func (f *fixture) authRedirect(session, appURL string) *url.URL {
	f.t.Helper()
	resp, body := f.do(req{method: "GET", path: "/api/v2/applications/auth-redirect?redirect_uri=" + url.QueryEscape(appURL),
		cookies: []*http.Cookie{{Name: f.s.sessionCookieName(), Value: session}}})
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("auth-redirect: %d %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Path != appAuthPath {
		f.t.Fatalf("auth-redirect sent the browser to %q", resp.Header.Get("Location"))
	}
	return loc
}

// visit follows a link on an app host; it returns the response.
func (f *fixture) visit(link *url.URL, cookies ...*http.Cookie) (*http.Response, string) {
	f.t.Helper()
	return f.do(req{method: "GET", path: link.RequestURI(), host: link.Host, cookies: cookies})
}

// redeem follows the one-time link and returns the app token cookie set.
func (f *fixture) redeem(link *url.URL) *http.Cookie {
	f.t.Helper()
	resp, body := f.visit(link)
	if resp.StatusCode != http.StatusSeeOther {
		f.t.Fatalf("the app sign-in link: %d %s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == f.s.appTokenCookieName() {
			return c
		}
	}
	f.t.Fatalf("the app sign-in link set no token cookie: %q", resp.Header.Values("Set-Cookie"))
	return nil
}

// openApp asks an app host for a page with the token cookie, as an API
// client (not a browser navigation). No agent runs in the fixture, so a
// caller who may open the app gets 503, one who may not 401.
func (f *fixture) openApp(host string, token *http.Cookie) int {
	f.t.Helper()
	r := req{method: "GET", path: "/", host: host}
	if token != nil {
		r.cookies = []*http.Cookie{{Name: token.Name, Value: token.Value}}
	}
	resp, _ := f.do(r)
	return resp.StatusCode
}

const (
	allowed = http.StatusServiceUnavailable // past authorization: the agent is away
	refused = http.StatusUnauthorized
)

func TestAppTokenFlow(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	session := f.session(f.owner, time.Hour)
	link := f.authRedirect(session, "http://"+subHost+"/notebooks/a?x=1")
	if link.Host != subHost || link.Query().Get(appAuthCodeParam) == "" || link.Query().Get("token") != "" {
		t.Fatalf("the sign-in link is %s, want %s%s?%s=…", link, subHost, appAuthPath, appAuthCodeParam)
	}
	if f.openApp(subHost, nil) != refused {
		t.Fatal("the app opens without a token")
	}
	resp, body := f.visit(link)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "http://"+subHost+"/notebooks/a?x=1" {
		t.Fatalf("redeeming the link: %d to %q (%s), want 303 to the page first asked for", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	var token *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == appTokenCookie {
			token = c
		}
	}
	if token == nil || token.Domain != "" || !token.HttpOnly || token.Path != "/" {
		t.Fatalf("the app token cookie is %q, want host-only and HttpOnly", resp.Header.Values("Set-Cookie"))
	}
	if got := f.openApp(subHost, token); got != allowed {
		t.Errorf("the app with its token: %d, want %d", got, allowed)
	}
	// The link opens once.
	if resp, body := f.visit(link); resp.StatusCode != refused || !strings.Contains(body, "used already") {
		t.Errorf("replaying the sign-in link: %d %s, want 401", resp.StatusCode, body)
	}
	// The token is for its host only.
	if got := f.openApp(authHost, token); got != refused {
		t.Errorf("the token on another app's host: %d, want %d", got, refused)
	}
}

func TestAppCodeRefusals(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	session := f.session(f.owner, time.Hour)
	// A code for one app does not open another (and is used up trying).
	link := f.authRedirect(session, "http://"+subHost+"/")
	other := *link
	other.Host = authHost
	if resp, _ := f.visit(&other); resp.StatusCode != refused {
		t.Errorf("a code on another app's host: %d, want %d", resp.StatusCode, refused)
	}
	if resp, _ := f.visit(link); resp.StatusCode != refused {
		t.Errorf("a code tried on another host still works on its own: %d", resp.StatusCode)
	}
	// A code lives a minute.
	link = f.authRedirect(session, "http://"+subHost+"/")
	f.clock.advance(appAuthCodeLifetime)
	if resp, _ := f.visit(link); resp.StatusCode != refused {
		t.Errorf("a code past its minute: %d, want %d", resp.StatusCode, refused)
	}
	// The old form of the link, with the token in it, opens nothing.
	legacy := &url.URL{Path: appAuthPath, RawQuery: "token=" + session + "&path=/", Host: subHost}
	if resp, _ := f.visit(legacy); resp.StatusCode != refused {
		t.Errorf("a link with a token parameter: %d, want %d", resp.StatusCode, refused)
	}
	// redirect_uri names the app; the code goes to the app's own origin,
	// not to a port or scheme the link chose.
	link = f.authRedirect(session, "https://"+strings.ToUpper(subHost)+":9999/")
	if link.Scheme != "http" || link.Host != subHost {
		t.Errorf("the code was sent to %s://%s, want http://%s", link.Scheme, link.Host, subHost)
	}
}

// TestAppTokenEndsWithSession: a token is bound to the session that
// minted it: signing out, or anything else that deletes the session,
// revokes it at once, and it never outlives the session.
func TestAppTokenEndsWithSession(t *testing.T) {
	f := newFixture(t, fixtureOptions{})

	t.Run("logout", func(t *testing.T) {
		session := f.session(f.owner, time.Hour)
		token := f.redeem(f.authRedirect(session, "http://"+subHost+"/"))
		if got := f.openApp(subHost, token); got != allowed {
			t.Fatalf("before logout: %d", got)
		}
		r := req{method: "POST", path: "/api/v2/users/logout", header: http.Header{"Origin": {origin(f.access)}},
			cookies: []*http.Cookie{{Name: f.s.sessionCookieName(), Value: session}}}
		if resp, body := f.do(r); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("logout: %d %s", resp.StatusCode, body)
		}
		if got := f.openApp(subHost, token); got != refused {
			t.Errorf("after logout: %d, want %d", got, refused)
		}
	})

	t.Run("session deleted", func(t *testing.T) {
		// As `tether logout --all`, suspending or deleting a user do.
		session := f.session(f.owner, time.Hour)
		token := f.redeem(f.authRedirect(session, "http://"+subHost+"/"))
		if err := f.db.DeleteSession(context.Background(), store.HashToken(session)); err != nil {
			t.Fatal(err)
		}
		if got := f.openApp(subHost, token); got != refused {
			t.Errorf("after the session was deleted: %d, want %d", got, refused)
		}
	})

	t.Run("session deleted between code and redeem", func(t *testing.T) {
		session := f.session(f.owner, time.Hour)
		link := f.authRedirect(session, "http://"+subHost+"/")
		if err := f.db.DeleteSession(context.Background(), store.HashToken(session)); err != nil {
			t.Fatal(err)
		}
		if resp, _ := f.visit(link); resp.StatusCode != refused || len(resp.Cookies()) != 0 {
			t.Errorf("redeeming a signed-out session's code: %d, cookies %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
		}
	})

	t.Run("never outlives the session", func(t *testing.T) {
		session := f.session(f.owner, 10*time.Minute)
		link := f.authRedirect(session, "http://"+subHost+"/")
		resp, _ := f.visit(link)
		var token *http.Cookie
		for _, c := range resp.Cookies() {
			token = c
		}
		sessionEnds := f.clock.Now().Add(10 * time.Minute)
		if token == nil || token.Expires.After(sessionEnds) {
			t.Fatalf("the token cookie %q outlives the session (ending %s)", resp.Header.Values("Set-Cookie"), sessionEnds)
		}
		f.clock.advance(10 * time.Minute)
		if got := f.openApp(subHost, token); got != refused {
			t.Errorf("once the session expired: %d, want %d", got, refused)
		}
	})

	t.Run("own lifetime", func(t *testing.T) {
		session := f.session(f.owner, 30*24*time.Hour)
		token := f.redeem(f.authRedirect(session, "http://"+subHost+"/"))
		// Used every 50 minutes it lasts appTokenLifetime, not longer.
		var used time.Duration
		for used+50*time.Minute < appTokenLifetime {
			f.clock.advance(50 * time.Minute)
			used += 50 * time.Minute
			if got := f.openApp(subHost, token); got != allowed {
				t.Fatalf("after %s in use: %d", used, got)
			}
		}
		f.clock.advance(appTokenLifetime - used)
		if got := f.openApp(subHost, token); got != refused {
			t.Errorf("after %s: %d, want %d", appTokenLifetime, got, refused)
		}
		// Unused for appTokenIdle, it ends.
		token = f.redeem(f.authRedirect(session, "http://"+subHost+"/"))
		f.clock.advance(appTokenIdle)
		if got := f.openApp(subHost, token); got != refused {
			t.Errorf("after %s unused: %d, want %d", appTokenIdle, got, refused)
		}
	})
}

// TestAppTokenCrossOrigin: the app token is a cookie, which pages of
// other apps on the same site can make the browser send; requests that
// change something must come from the app's own pages.
func TestAppTokenCrossOrigin(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	token := f.redeem(f.authRedirect(f.session(f.owner, time.Hour), "http://"+subHost+"/"))
	tests := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"the app itself", http.Header{"Origin": {"http://" + subHost}}, allowed},
		{"no Origin (not a browser)", http.Header{}, allowed},
		{"another user's app", http.Header{"Origin": {"http://pub--dev--mallory.apps.example.com"}}, http.StatusForbidden},
		{"the dashboard", http.Header{"Origin": {"http://" + accessHost}}, http.StatusForbidden},
		{"a cross-site fetch", http.Header{"Sec-Fetch-Site": {"same-site"}}, http.StatusForbidden},
	}
	for _, tc := range tests {
		for _, method := range []string{"POST", "PUT", "DELETE"} {
			r := req{method: method, path: "/api/run", host: subHost, header: tc.header, body: "print(1)",
				cookies: []*http.Cookie{{Name: token.Name, Value: token.Value}}}
			if resp, body := f.do(r); resp.StatusCode != tc.want {
				t.Errorf("%s %s from %s: %d, want %d: %.200s", method, r.path, tc.name, resp.StatusCode, tc.want, body)
			}
		}
	}
	// A public app is the app's own business: no token, no check.
	r := req{method: "POST", path: "/", host: pubHost, header: http.Header{"Origin": {"https://evil.example"}}}
	if resp, _ := f.do(r); resp.StatusCode != allowed {
		t.Errorf("a cross-site POST to a public app: %d, want %d", resp.StatusCode, allowed)
	}
}

// TestAppHostReservedPaths: /__tether/ on an app host is the server's, in
// every spelling, and never reaches the app with a code in it.
func TestAppHostReservedPaths(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, p := range []string{"/__tether/", "/__tether/other", "/__tether/app-auth/", "/x/../__tether/app-auth"} {
		resp, body := f.do(req{method: "GET", path: p + "?" + appAuthCodeParam + "=x", host: pubHost})
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != refused {
			t.Errorf("%s on a public app's host: %d, want the server's 404 or 401: %.200s", p, resp.StatusCode, body)
		}
	}
}

// TestFinishAppAuthStaysOnTheApp: the path the sign-in link goes on to is
// a path on the app's host, whatever it says.
func TestFinishAppAuthStaysOnTheApp(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	session := f.session(f.owner, time.Hour)
	for _, p := range []string{"//evil.example/", "/\\evil.example/", "/\t/evil.example/", "/.//evil.example/", "https://evil.example/", "javascript:alert(1)"} {
		link := f.authRedirect(session, "http://"+subHost+"/")
		q := link.Query()
		q.Set("path", p)
		link.RawQuery = q.Encode()
		resp, _ := f.visit(link)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Host != subHost || loc.Scheme != "http" {
			t.Errorf("path %q: the browser goes to %q, want a page of http://%s", p, resp.Header.Get("Location"), subHost)
		}
	}
}

// TestAnonymousCannotTellAppsApart: a caller who is not signed in gets
// the same answer for a private app as for one that does not exist (public
// apps are the exception, by design); a signed-in member who may not open
// an app gets the same 404 as for a missing one.
func TestAnonymousCannotTellAppsApart(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	type probe struct {
		host, path string
	}
	answer := func(p probe, html bool, token string) string {
		r := req{method: "GET", path: p.path, host: p.host, header: http.Header{}}
		if html {
			r.header.Set("Accept", "text/html")
		}
		if token != "" {
			r.header.Set(tether.SessionTokenHeader, token)
		}
		resp, body := f.do(r)
		// The answer may repeat what was asked for; nothing else may
		// differ.
		s := resp.Status + " " + resp.Header.Get("Location") + " " + body
		if p.host != "" {
			s = strings.ReplaceAll(s, p.host, "HOST")
		}
		s = strings.NewReplacer(p.path, "PATH", url.QueryEscape(p.path), "PATH").Replace(s)
		for _, name := range []string{"nothing", "nobody", "nows", "web", "sub", "bob", "dev"} {
			s = strings.ReplaceAll(s, name, "NAME")
		}
		return s
	}
	groups := []struct {
		name   string
		probes []probe
	}{
		{"path apps", []probe{
			{"", "/@bob/dev/apps/web/"},     // private, exists
			{"", "/@bob/dev/apps/nothing/"}, // no such app
			{"", "/@bob/nows/apps/web/"},    // no such workspace
			{"", "/@nobody/dev/apps/web/"},  // no such user
			{"", "/@bob/dev/apps/sub/"},     // a private subdomain app, by path
		}},
		{"subdomain apps", []probe{
			{subHost, "/"},
			{"nothing--dev--bob.apps.example.com", "/"},
			{"sub--nows--bob.apps.example.com", "/"},
			{"sub--dev--nobody.apps.example.com", "/"},
		}},
	}
	for _, g := range groups {
		for _, html := range []bool{false, true} {
			want := answer(g.probes[0], html, "")
			for _, p := range g.probes[1:] {
				if got := answer(p, html, ""); got != want {
					t.Errorf("%s, HTML %v: anonymous callers tell %s%s apart from a private app:\n%s\nvs\n%s", g.name, html, p.host, p.path, got, want)
				}
			}
		}
	}
	// Signed in, a member who may not open bob's apps sees "not found",
	// as for apps that do not exist.
	carol := f.session(f.other, time.Hour)
	want := answer(probe{"", "/@bob/dev/apps/web/"}, false, carol)
	if !strings.HasPrefix(want, "404") {
		t.Errorf("another member opening bob's private app: %s", want)
	}
	if got := answer(probe{"", "/@bob/dev/apps/nothing/"}, false, carol); got != want {
		t.Errorf("a member tells a private app from a missing one:\n%s\nvs\n%s", got, want)
	}
	// Public apps answer anyone.
	if got := f.openApp(pubHost, nil); got != allowed {
		t.Errorf("anonymous on the public app: %d, want %d", got, allowed)
	}
}
