package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// The access matrix: every route of the routing table (routes.go) × every
// identity × every form of its credential, with every method, and every
// way a browser can send a request from a page that is not the dashboard.
// The rows are keyed by the table's patterns: a route without a row fails
// the test, so a new route cannot go in without saying who may use it.

// identity is who a request claims to be.
type identity string

const (
	anonymous identity = "anonymous"
	owner     identity = "owner"  // bob, a member who owns workspace dev
	member    identity = "member" // carol, another member
	admin     identity = "admin"
	agent     identity = "agent" // dev's agent token
	expired   identity = "expired session"
	invalid   identity = "invalid session"
	// apiToken is an API token of the owner's: it gets what the owner
	// gets in a header, and what a stranger gets in a cookie
	// (accessRow.expectedFor).
	apiToken identity = "owner's API token"
	wsproxy  identity = "workspace proxy" // the token of the fixture's proxy "edge"
)

var identities = []identity{anonymous, owner, member, admin, agent, expired, invalid, apiToken, wsproxy}

// form is how a credential travels.
type form string

const (
	formNone       form = "none"
	formHeader     form = "token header"
	formBearer     form = "bearer"
	formCookie     form = "cookie"              // with the dashboard's Origin on state changes, as the dashboard sends
	formCookieCSRF form = "cookie, CSRF header" // without Origin, with tether.CSRFHeader
)

// formsOf lists the forms in which an identity's credential can travel.
func formsOf(id identity) []form {
	switch id {
	case anonymous:
		return []form{formNone}
	case agent:
		return []form{formHeader, formBearer}
	case wsproxy:
		return []form{formHeader}
	}
	return []form{formHeader, formBearer, formCookie, formCookieCSRF}
}

// credential is one identity's credential, minted fresh for each request
// so that rows that sign out or delete things do not disturb the others.
func (f *fixture) credential(id identity) (token string, isAgent bool) {
	switch id {
	case owner:
		return f.session(f.owner, time.Hour), false
	case member:
		return f.session(f.other, time.Hour), false
	case admin:
		return f.session(f.admin, time.Hour), false
	case agent:
		return f.agentToken, true
	case expired:
		return f.session(f.owner, -time.Minute), false
	case invalid:
		return newToken(), false
	case apiToken:
		return f.apiToken(f.owner, f.name("tok"), time.Hour), false
	}
	return "", false
}

// sign adds id's credential in form fm to r.
func (f *fixture) sign(r *req, id identity, fm form) {
	if r.header == nil {
		r.header = http.Header{}
	}
	if id == wsproxy {
		r.header.Set(tether.ProxyTokenHeader, f.proxyToken)
		return
	}
	token, isAgent := f.credential(id)
	switch fm {
	case formHeader:
		if isAgent {
			r.header.Set(tether.AgentTokenHeader, token)
		} else {
			r.header.Set(tether.SessionTokenHeader, token)
		}
	case formBearer:
		r.header.Set("Authorization", "Bearer "+token)
	case formCookie:
		r.cookies = append(r.cookies, &http.Cookie{Name: f.s.sessionCookieName(), Value: token})
		if r.websocket || r.method != http.MethodGet {
			r.header.Set("Origin", origin(f.access))
		}
	case formCookieCSRF:
		r.cookies = append(r.cookies, &http.Cookie{Name: f.s.sessionCookieName(), Value: token})
		r.header.Set(tether.CSRFHeader, "1")
	}
}

// accessRow says, for one route, how to call it and what each identity
// gets.
type accessRow struct {
	// call returns a request that succeeds for identities allowed to make
	// it. It is called for every request: rows that create or delete
	// things make fresh ones.
	call func(f *fixture) req
	// want is the status for the signed-in identities (owner, member,
	// admin) and, on agent routes, for the agent. Identities missing here
	// get, on user routes and agent routes, 401; on other routes, rest.
	want map[identity]int
	rest int
	// tokenWant overrides, for an API token in a header, the owner's
	// status.
	tokenWant int
}

// get, post and friends build calls.
func get(path string) func(*fixture) req {
	return func(*fixture) req { return req{method: "GET", path: path} }
}

func ws(path string) func(*fixture) req {
	return func(*fixture) req { return req{method: "GET", path: path, websocket: true} }
}

func post(path, body string) func(*fixture) req {
	return func(*fixture) req {
		return req{method: "POST", path: path, body: body, header: http.Header{"Content-Type": {"application/json"}}}
	}
}

func put(path, body string) func(*fixture) req {
	return func(f *fixture) req {
		r := post(path, body)(f)
		r.method = "PUT"
		return r
	}
}

// onFreshUser calls a route about a member made for this one request, so
// that rows which change or delete a user leave the fixture's alone.
func onFreshUser(call func(path string) func(*fixture) req, format string) func(*fixture) req {
	return func(f *fixture) req {
		u := f.addUser(f.name("x"), tether.RoleMember, "fresh-user-password")
		return call(fmt.Sprintf(format, u.Username))(f)
	}
}

func del(path string) func(*fixture) req {
	return func(*fixture) req { return req{method: "DELETE", path: path} }
}

func users(status int) map[identity]int {
	return map[identity]int{owner: status, member: status, admin: status}
}

// accessTable is keyed by route pattern.
func accessTable() map[string]accessRow {
	ok := http.StatusOK
	return map[string]accessRow{
		"/derp":                {call: get("/derp"), rest: ok},
		"/derp/":               {call: get("/derp/probe"), rest: ok},
		"/":                    {call: get("/"), rest: ok},
		"/api/":                {call: get("/api/v2/nothing"), rest: http.StatusNotFound},
		"GET /api/v2/debug/ws": {call: ws("/api/v2/debug/ws"), rest: http.StatusSwitchingProtocols},
		"GET /healthz":         {call: get("/healthz"), rest: ok},
		// Binaries and the install script are for anyone (a workspace has
		// no credential but its agent token, in the environment).
		"GET /bin/{file}": {call: get("/bin/tether-plan9-mips"), rest: http.StatusNotFound},
		"GET /install.sh": {call: get("/install.sh"), rest: ok},

		"GET /api/v2/buildinfo": {call: get("/api/v2/buildinfo"), rest: ok},
		"GET /api/v2/connection-info": {call: get("/api/v2/connection-info"),
			want: map[identity]int{owner: ok, member: ok, admin: ok, agent: ok}, rest: http.StatusUnauthorized},
		"GET /api/v2/debug/health": {call: get("/api/v2/debug/health"), want: users(ok)},

		"GET /api/v2/users/first": {call: get("/api/v2/users/first"), rest: ok},
		"POST /api/v2/users/first": {call: post("/api/v2/users/first", `{"username":"eve","email":"eve@example.com","password":"eve-password"}`),
			rest: http.StatusConflict},
		"POST /api/v2/users/login":  {call: post("/api/v2/users/login", `{"login":"bob","password":"`+ownerPassword+`"}`), rest: ok},
		"POST /api/v2/users/logout": {call: post("/api/v2/users/logout", ""), want: users(http.StatusNoContent)},
		"GET /api/v2/users/me":      {call: get("/api/v2/users/me"), want: users(ok)},
		"GET /api/v2/users": {call: get("/api/v2/users"),
			want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"POST /api/v2/users": {call: func(f *fixture) req {
			n := f.name("u")
			return post("/api/v2/users", `{"username":"`+n+`","email":"`+n+`@example.com","password":"long-enough-password","role":"admin"}`)(f)
		}, want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: http.StatusCreated}},
		// Members may see and sign out only themselves: others are "not
		// found"; changing a user is for admins.
		"GET /api/v2/users/{user}": {call: get("/api/v2/users/bob"),
			want: map[identity]int{owner: ok, member: http.StatusNotFound, admin: ok}},
		"DELETE /api/v2/users/{user}": {call: onFreshUser(del, "/api/v2/users/%s"),
			want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"PUT /api/v2/users/{user}/status": {call: onFreshUser(func(p string) func(*fixture) req { return put(p, `{"status":"suspended"}`) }, "/api/v2/users/%s/status"),
			want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"PUT /api/v2/users/{user}/role": {call: onFreshUser(func(p string) func(*fixture) req { return put(p, `{"role":"admin"}`) }, "/api/v2/users/%s/role"),
			want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"PUT /api/v2/users/{user}/password": {call: onFreshUser(func(p string) func(*fixture) req { return put(p, `{"password":"a brand new passphrase"}`) }, "/api/v2/users/%s/password"),
			want: map[identity]int{owner: http.StatusNotFound, member: http.StatusNotFound, admin: http.StatusNoContent}},
		"DELETE /api/v2/users/{user}/sessions": {call: onFreshUser(del, "/api/v2/users/%s/sessions"),
			want: map[identity]int{owner: http.StatusNotFound, member: http.StatusNotFound, admin: ok}},
		// Tokens: members see and delete their own (others' are "not
		// found"), admins anyone's; everyone creates their own, but not
		// with a token.
		"GET /api/v2/users/{user}/tokens": {call: get("/api/v2/users/bob/tokens"),
			want: map[identity]int{owner: ok, member: http.StatusNotFound, admin: ok}},
		"POST /api/v2/users/{user}/tokens": {call: post("/api/v2/users/me/tokens", `{"lifetime":"1h"}`),
			want: users(http.StatusCreated), tokenWant: http.StatusForbidden},
		"DELETE /api/v2/users/{user}/tokens/{token}": {call: func(f *fixture) req {
			name := f.name("del")
			f.apiToken(f.owner, name, time.Hour)
			return del("/api/v2/users/bob/tokens/" + name)(f)
		}, want: map[identity]int{owner: http.StatusNoContent, member: http.StatusNotFound, admin: http.StatusNoContent}},

		"GET /api/v2/templates": {call: get("/api/v2/templates"), want: users(ok)},
		"POST /api/v2/templates": {call: func(f *fixture) req {
			return post("/api/v2/templates", `{"name":"`+f.name("t")+`","apps":[]}`)(f)
		}, want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"GET /api/v2/templates/{name}": {call: get("/api/v2/templates/apps"), want: users(ok)},

		"GET /api/v2/workspaces": {call: get("/api/v2/workspaces"), want: users(ok)},
		"POST /api/v2/workspaces": {call: func(f *fixture) req {
			return post("/api/v2/workspaces", `{"name":"`+f.name("w")+`"}`)(f)
		}, want: users(http.StatusCreated)},
		"GET /api/v2/workspaces/{owner}/{name}": {call: get("/api/v2/workspaces/bob/dev"),
			want: map[identity]int{owner: ok, member: http.StatusNotFound, admin: ok}},
		"DELETE /api/v2/workspaces/{owner}/{name}": {call: func(f *fixture) req {
			ws, _ := f.addWorkspace(f.owner, f.name("del"), uuid.Nil)
			return req{method: "DELETE", path: "/api/v2/workspaces/bob/" + ws.Name}
		}, want: map[identity]int{owner: http.StatusNoContent, member: http.StatusNotFound, admin: http.StatusNoContent}},
		"GET /api/v2/workspaces/{owner}/{name}/startup-script": {call: func(f *fixture) req {
			f.setStartupScript(f.ws, tether.StartupScriptStatus{Status: tether.StartupScriptRunning}, "")
			return get("/api/v2/workspaces/bob/dev/startup-script")(f)
		}, want: map[identity]int{owner: ok, member: http.StatusNotFound, admin: ok}},
		// No agent is connected: reaching the handler says so.
		"GET /api/v2/workspaces/{owner}/{name}/pty": {call: ws("/api/v2/workspaces/bob/dev/pty?reconnect=r1"),
			want: map[identity]int{owner: http.StatusServiceUnavailable, member: http.StatusNotFound, admin: http.StatusServiceUnavailable}},
		"GET /api/v2/workspaces/{owner}/{name}/coordinate": {
			call: ws("/api/v2/workspaces/bob/dev/coordinate?version=" + tether.CoordinateProtocolVersion + "&id=" + uuid.NewString()),
			want: map[identity]int{owner: http.StatusSwitchingProtocols, member: http.StatusNotFound, admin: http.StatusSwitchingProtocols}},
		// Callers who are not signed in are sent to sign in (303 too).
		"GET /api/v2/applications/auth-redirect": {
			call: get("/api/v2/applications/auth-redirect?redirect_uri=" + url.QueryEscape("http://sub--dev--bob.apps.example.com/")),
			want: map[identity]int{owner: http.StatusSeeOther, member: http.StatusNotFound, admin: http.StatusSeeOther},
			rest: http.StatusSeeOther},

		"GET /api/v2/latency": {call: get("/api/v2/latency"), rest: http.StatusNoContent},
		"GET /api/v2/regions": {call: get("/api/v2/regions"), want: users(ok)},
		"GET /api/v2/workspaceproxies": {call: get("/api/v2/workspaceproxies"),
			want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		"POST /api/v2/workspaceproxies": {call: func(f *fixture) req {
			return post("/api/v2/workspaceproxies", `{"name":"`+f.name("p")+`"}`)(f)
		}, want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: http.StatusCreated}},
		"DELETE /api/v2/workspaceproxies/{name}": {call: func(f *fixture) req {
			p, _ := f.addProxy(f.name("p"))
			return del("/api/v2/workspaceproxies/" + p.Name)(f)
		}, want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: http.StatusNoContent}},
		"POST /api/v2/workspaceproxies/{name}/token": {call: func(f *fixture) req {
			p, _ := f.addProxy(f.name("p"))
			return post("/api/v2/workspaceproxies/"+p.Name+"/token", "")(f)
		}, want: map[identity]int{owner: http.StatusForbidden, member: http.StatusForbidden, admin: ok}},
		// The owner (and an admin) are handed over to the proxy; others'
		// workspaces are not found; callers not signed in go to sign in.
		"GET /api/v2/workspaceproxies/auth-redirect": {
			call: get("/api/v2/workspaceproxies/auth-redirect?redirect_uri=" + url.QueryEscape("http://"+proxyHost+"/@bob/dev/terminal")),
			want: map[identity]int{owner: http.StatusSeeOther, member: http.StatusNotFound, admin: http.StatusSeeOther},
			rest: http.StatusSeeOther},
		// The proxy's own routes take its token, and nothing else does.
		"POST /api/v2/workspaceproxies/me/heartbeat": {call: post("/api/v2/workspaceproxies/me/heartbeat", `{"access_url":"http://`+proxyHost+`","version":"v"}`),
			want: map[identity]int{wsproxy: ok}},
		// With a grant a user's hand-off gave the proxy for the workspace
		// (workspaceproxies_coordinate_test.go attacks the grant).
		"GET /api/v2/workspaceproxies/me/coordinate": {call: func(f *fixture) req {
			r := ws("/api/v2/workspaceproxies/me/coordinate?version=" + tether.CoordinateProtocolVersion + "&id=" + uuid.NewString() + "&agent=" + f.ws.ID.String())(f)
			r.header = http.Header{tether.ProxyGrantHeader: {mintGrant(f.t, f, f.session(f.owner, time.Hour), "http://"+proxyHost+"/@bob/dev/terminal")}}
			return r
		}, want: map[identity]int{wsproxy: http.StatusSwitchingProtocols}},
		"GET /api/v2/workspaceproxies/me/node-keys/{key}": {call: get("/api/v2/workspaceproxies/me/node-keys/nodekey:" + strings.Repeat("0", 64)),
			want: map[identity]int{wsproxy: ok}},

		"GET /api/v2/agent/manifest":     {call: get("/api/v2/agent/manifest"), want: map[identity]int{agent: ok}},
		"GET /api/v2/agent/connect":      {call: ws("/api/v2/agent/connect"), want: map[identity]int{agent: http.StatusSwitchingProtocols}},
		"POST /api/v2/agent/app-health":  {call: post("/api/v2/agent/app-health", `{"apps":{}}`), want: map[identity]int{agent: http.StatusNoContent}},
		"POST /api/v2/agent/connections": {call: post("/api/v2/agent/connections", `{}`), want: map[identity]int{agent: http.StatusNoContent}},
		"POST /api/v2/agent/startup-script": {call: post("/api/v2/agent/startup-script", `{"status":"running","started_at":"2026-03-01T12:00:00Z"}`),
			want: map[identity]int{agent: http.StatusNoContent}},
	}
}

// expected is the status an identity gets from a route.
func (row accessRow) expected(rt route, id identity) int {
	if st, ok := row.want[id]; ok {
		return st
	}
	switch rt.auth {
	case authUser, authAgent, authProxy:
		return http.StatusUnauthorized
	}
	return row.rest
}

// expectedFor is the status an identity gets with its credential in form
// fm: an API token is the owner in a header, and nobody in a cookie.
func (row accessRow) expectedFor(rt route, id identity, fm form) int {
	if id != apiToken {
		return row.expected(rt, id)
	}
	if fm == formCookie || fm == formCookieCSRF {
		return row.expected(rt, anonymous)
	}
	if row.tokenWant != 0 {
		return row.tokenWant
	}
	return row.expected(rt, owner)
}

// accessFixture is a server with a stand-in relay and dashboard, and a
// cached health report (the real checks reach out over the network).
func accessFixture(t *testing.T) *fixture {
	stub := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			fmt.Fprint(w, name)
		})
	}
	f := newFixture(t, fixtureOptions{derp: stub("relay"), site: stub("dashboard")})
	f.s.health.report, f.s.health.at = &tether.HealthReport{Healthy: true}, time.Now()
	_, f.proxyToken = f.addProxy("edge")
	return f
}

func TestAccessMatrix(t *testing.T) {
	f := accessFixture(t)
	table := accessTable()
	seen := map[string]bool{}
	for _, rt := range f.s.routeList {
		seen[rt.pattern] = true
		row, ok := table[rt.pattern]
		if !ok {
			t.Errorf("route %q has no row in the access table (access_test.go): say who may use it", rt.pattern)
			continue
		}
		t.Run(rt.pattern, func(t *testing.T) {
			for _, id := range identities {
				for _, fm := range formsOf(id) {
					r := row.call(f)
					f.sign(&r, id, fm)
					resp, body := f.do(r)
					if want := row.expectedFor(rt, id, fm); resp.StatusCode != want {
						t.Errorf("%s (%s): %d, want %d: %.300s", id, fm, resp.StatusCode, want, body)
					}
				}
			}
		})
	}
	for pattern := range table {
		if !seen[pattern] {
			t.Errorf("the access table has a row for %q, which the server does not route", pattern)
		}
	}
}

// TestAccessOtherMethods: a route answers its own method only; any other
// reaches no handler of its path (unless that method has a route of its
// own).
func TestAccessOtherMethods(t *testing.T) {
	f := accessFixture(t)
	routed := map[string]bool{}
	for _, rt := range f.s.routeList {
		routed[rt.pattern] = true
	}
	table := accessTable()
	for _, rt := range f.s.routeList {
		method, path, hasMethod := strings.Cut(rt.pattern, " ")
		if !hasMethod {
			continue // a route for every method
		}
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
			if m == method || routed[m+" "+path] || (m == "HEAD" && routed["GET "+path]) {
				continue
			}
			r := table[rt.pattern].call(f)
			r.method = m
			if other := f.routedAs(r); other != rt.pattern && strings.HasPrefix(other, m+" ") {
				continue // a route of its own, with a row of its own
			}
			f.sign(&r, admin, formHeader)
			resp, body := f.do(r)
			if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 404 or 405: %.200s", m, r.path, resp.StatusCode, body)
			}
		}
	}
}

// routedAs is the pattern of the route the server's mux picks for r.
func (f *fixture) routedAs(r req) string {
	hr := httptest.NewRequest(r.method, "http://"+accessHost+r.path, nil)
	_, pattern := f.s.mux.Handler(hr)
	return pattern
}

// Ways a page that is not the dashboard makes a browser send a request:
// each must be refused when the request changes something, whatever its
// content type, and whether or not the cookie signs it in.
var foreignOrigins = []struct {
	name   string
	header http.Header
}{
	{"cross-site", http.Header{"Origin": {"https://evil.example"}}},
	{"same-site subdomain app", http.Header{"Origin": {"http://web--dev--bob.apps.example.com"}}},
	{"same-site other host", http.Header{"Origin": {"http://other.example.com"}}},
	{"null origin", http.Header{"Origin": {"null"}}},
	{"other port", http.Header{"Origin": {"http://tether.example.com:8080"}}},
	{"other scheme", http.Header{"Origin": {"https://tether.example.com"}}},
	{"two origins", http.Header{"Origin": {"http://tether.example.com", "https://evil.example"}}},
	{"no origin, same-site fetch", http.Header{"Sec-Fetch-Site": {"same-site"}}},
	{"no origin, cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
}

// contentTypes are what a cross-site page can send without a preflight
// (and JSON, which it cannot, for good measure).
var contentTypes = []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json"}

// changesStateCall is the row's call if it changes state, else a POST to
// the same path, which a page could send too.
func changesStateCall(f *fixture, row accessRow) req {
	r := row.call(f)
	if r.method == http.MethodGet && !r.websocket {
		r.method = http.MethodPost
	}
	return r
}

func TestAccessCrossSite(t *testing.T) {
	f := accessFixture(t)
	table := accessTable()
	for _, rt := range f.s.routeList {
		row := table[rt.pattern]
		if row.call == nil {
			continue // TestAccessMatrix reports it
		}
		t.Run(rt.pattern, func(t *testing.T) {
			before := f.count()
			for _, o := range foreignOrigins {
				for _, ct := range contentTypes {
					// The admin's cookie (the most it could do), and no
					// credential at all (a login or first-user CSRF).
					for _, id := range []identity{admin, anonymous} {
						r := changesStateCall(f, row)
						fm := formCookie
						if id == anonymous {
							fm = formNone
						}
						f.sign(&r, id, fm)
						r.header.Del("Origin")
						for k, v := range o.header {
							r.header[k] = v
						}
						r.header.Del("Content-Type")
						if ct != "" {
							r.header.Set("Content-Type", ct)
						}
						resp, body := f.do(r)
						if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cross-site request refused") {
							t.Errorf("%s, %s, Content-Type %q: %d, want 403 cross-site: %.200s", o.name, id, ct, resp.StatusCode, body)
						}
					}
				}
			}
			// The cookie with no Origin and no CSRF header is refused too;
			// without the cookie (the CLI) it passes.
			r := changesStateCall(f, row)
			f.sign(&r, admin, formCookie)
			r.header.Del("Origin")
			if resp, body := f.do(r); resp.StatusCode != http.StatusForbidden {
				t.Errorf("cookie without Origin or %s: %d, want 403: %.200s", tether.CSRFHeader, resp.StatusCode, body)
			}
			if after := f.count(); after != before {
				t.Errorf("refused requests changed things: %s before, %s after", before, after)
			}
			// Token headers are no browser's doing: they pass whatever the
			// Origin says. WebSockets are the exception: once the caller
			// is known, a foreign Origin is refused (by the route, or by
			// coder/websocket).
			for _, id := range []identity{admin, agent} {
				r := row.call(f)
				f.sign(&r, id, formHeader)
				r.header.Set("Origin", "https://evil.example")
				want := row.expected(rt, id)
				if rt.websocket && want != http.StatusUnauthorized {
					want = http.StatusForbidden
				}
				if resp, body := f.do(r); resp.StatusCode != want {
					t.Errorf("%s token header with a foreign Origin: %d, want %d: %.200s", id, resp.StatusCode, want, body)
				}
			}
		})
	}
}

// count sums up what requests can create or delete: users, templates and
// workspaces.
func (f *fixture) count() string {
	f.t.Helper()
	ctx := context.Background()
	us, err := f.db.ListUsers(ctx, store.Page{})
	if err != nil {
		f.t.Fatal(err)
	}
	ts, err := f.db.ListTemplates(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	ws, err := f.db.ListWorkspaces(ctx, uuid.Nil, store.Page{})
	if err != nil {
		f.t.Fatal(err)
	}
	// Less the ones the fixture added for rows that change or delete them.
	return fmt.Sprintf("%d users, %d templates, %d workspaces",
		int64(len(us))-f.addedUsers.Load(), len(ts), int64(len(ws))-f.added.Load())
}
