package server

import (
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

func TestParseAppPath(t *testing.T) {
	tests := []struct {
		path                string
		user, ws, app, rest string
		ok                  bool
	}{
		{"/@alice/dev/apps/web/", "alice", "dev", "web", "/", true},
		{"/@alice/dev/apps/web", "alice", "dev", "web", "/", true},
		{"/@alice/dev/apps/web/a/b?c", "alice", "dev", "web", "/a/b?c", true},
		{"/@alice/dev/terminal", "", "", "", "", false},
		{"/@alice/dev/apps/", "", "", "", "", false},
		{"/alice/dev/apps/web/", "", "", "", "", false},
		{"/@/dev/apps/web/", "", "", "", "", false},
	}
	for _, tc := range tests {
		user, ws, app, rest, ok := parseAppPath(tc.path)
		if ok != tc.ok || user != tc.user || ws != tc.ws || app != tc.app || rest != tc.rest {
			t.Errorf("parseAppPath(%q) = %q %q %q %q %v", tc.path, user, ws, app, rest, ok)
		}
	}
}

func TestWildcard(t *testing.T) {
	access, _ := url.Parse("https://tether.example.com:8443")
	for _, bad := range []string{"apps.example.com", "*.*.example.com", "*."} {
		if _, err := parseWildcard(bad, access); err == nil {
			t.Errorf("parseWildcard(%q) accepted", bad)
		}
	}
	w, err := parseWildcard("*.apps.example.com", access)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.String(); got != "*.apps.example.com:8443" {
		t.Errorf("String() = %q (the port comes from the access URL)", got)
	}
	tests := []struct {
		host           string
		app, ws, owner string
		ok             bool
	}{
		{"web--dev--alice.apps.example.com:8443", "web", "dev", "alice", true},
		{"WEB--dev--alice.apps.example.com", "web", "dev", "alice", true},
		{"web--dev.apps.example.com", "", "", "", false},
		{"a.web--dev--alice.apps.example.com", "", "", "", false},
		{"tether.example.com", "", "", "", false},
		{"web--dev--alice.apps.example.com.evil.com", "", "", "", false},
	}
	for _, tc := range tests {
		app, ws, owner, ok := w.appHost(tc.host)
		if ok != tc.ok || app != tc.app || ws != tc.ws || owner != tc.owner {
			t.Errorf("appHost(%q) = %q %q %q %v", tc.host, app, ws, owner, ok)
		}
	}
	var none *wildcard
	if _, _, _, ok := none.appHost("web--dev--alice.apps.example.com"); ok {
		t.Error("a server without a wildcard took an app host")
	}
}

func TestAuthorizeApp(t *testing.T) {
	owner := store.User{User: tether.User{ID: uuid.New(), Role: tether.RoleMember}}
	other := store.User{User: tether.User{ID: uuid.New(), Role: tether.RoleMember}}
	admin := store.User{User: tether.User{ID: uuid.New(), Role: tether.RoleAdmin}}
	ws := store.Workspace{ID: uuid.New(), OwnerID: owner.ID}
	tests := []struct {
		share  tether.AppShare
		caller *store.User
		want   string // error code, "" for allowed
	}{
		{tether.ShareOwner, &owner, ""},
		{tether.ShareOwner, &admin, ""},
		{tether.ShareOwner, &other, tether.ENOTFOUND},
		{tether.ShareOwner, nil, tether.EUNAUTHORIZED},
		{tether.ShareAuthenticated, &other, ""},
		{tether.ShareAuthenticated, nil, tether.EUNAUTHORIZED},
		{tether.SharePublic, nil, ""},
	}
	for _, tc := range tests {
		err := authorizeApp(tc.caller, appTarget{ws: ws, app: tether.App{Name: "web", Share: tc.share}})
		if got := tether.ErrorCode(err); got != tc.want {
			t.Errorf("share %s, caller %v: %q, want %q", tc.share, tc.caller != nil, got, tc.want)
		}
	}
}

func TestAppResponseRewrites(t *testing.T) {
	resp := &http.Response{Header: http.Header{}}
	resp.Header.Add("Set-Cookie", "sid=1; Path=/; HttpOnly")
	resp.Header.Add("Set-Cookie", "pref=2; Path=/settings; Domain=example.com")
	resp.Header.Add("Set-Cookie", tether.SessionCookie+"=stolen; Path=/")
	resp.Header.Set("Location", "/login?next=%2F")
	filterAppCookies(resp, "/@alice/dev/apps/web")
	target, _ := url.Parse("http://127.0.0.1:8080")
	rewriteLocation(resp, target, "/@alice/dev/apps/web")

	got := resp.Header.Values("Set-Cookie")
	want := []string{"sid=1; Path=/@alice/dev/apps/web/; HttpOnly", "pref=2; Path=/@alice/dev/apps/web/settings"}
	if len(got) != len(want) {
		t.Fatalf("Set-Cookie = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Set-Cookie[%d] = %q, want %q", i, got[i], want[i])
		}
	}
	if loc := resp.Header.Get("Location"); loc != "/@alice/dev/apps/web/login?next=%2F" {
		t.Errorf("Location = %q", loc)
	}

	elsewhere := &http.Response{Header: http.Header{"Location": {"https://sso.example.com/auth"}}}
	rewriteLocation(elsewhere, target, "/@alice/dev/apps/web")
	if loc := elsewhere.Header.Get("Location"); loc != "https://sso.example.com/auth" {
		t.Errorf("a redirect elsewhere was rewritten to %q", loc)
	}
}

// TestStripCredentials: no credential of Tether's reaches an app, in any
// form the server accepts it; the app's own credentials do.
func TestStripCredentials(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	session := f.session(f.owner, time.Hour)
	old := f.session(f.owner, -time.Hour)
	tests := []struct {
		name   string
		header http.Header
		want   http.Header // what reaches the app of the headers above
	}{
		{"session header", http.Header{tether.SessionTokenHeader: {session}}, http.Header{}},
		{"agent token header", http.Header{tether.AgentTokenHeader: {f.agentToken}}, http.Header{}},
		{"bearer session", http.Header{"Authorization": {"Bearer " + session}}, http.Header{}},
		{"bearer session, lowercase", http.Header{"Authorization": {"bearer  " + session}}, http.Header{}},
		{"bearer expired session", http.Header{"Authorization": {"Bearer " + old}}, http.Header{}},
		{"bearer agent token", http.Header{"Authorization": {"Bearer " + f.agentToken}}, http.Header{}},
		{"bearer of the app's own", http.Header{"Authorization": {"Bearer app-api-key"}}, http.Header{"Authorization": {"Bearer app-api-key"}}},
		{"basic auth of the app's own", http.Header{"Authorization": {"Basic YTpi"}}, http.Header{"Authorization": {"Basic YTpi"}}},
		{"two Authorization headers", http.Header{"Authorization": {"Bearer " + session, "Bearer app-api-key"}}, http.Header{"Authorization": {"Bearer app-api-key"}}},
		{"session cookie", http.Header{"Cookie": {tether.SessionCookie + "=" + session}}, http.Header{}},
		{"__Host- session cookie", http.Header{"Cookie": {tether.SessionCookieSecure + "=" + session}}, http.Header{}},
		{"app token cookie", http.Header{"Cookie": {appTokenCookie + "=x"}}, http.Header{}},
		{"__Host- app token cookie", http.Header{"Cookie": {appTokenCookieSecure + "=x"}}, http.Header{}},
		{"cookie names in other case", http.Header{"Cookie": {"TETHER_SESSION=" + session + "; __host-Tether_session=" + session}}, http.Header{}},
		{"the app's own cookies", http.Header{"Cookie": {"theme=dark; " + tether.SessionCookie + "=" + session, "sid=1"}}, http.Header{"Cookie": {"theme=dark; sid=1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://app/", nil)
			r.Header = tc.header.Clone()
			f.s.stripCredentials(r)
			for _, k := range []string{tether.SessionTokenHeader, tether.AgentTokenHeader, "Authorization", "Cookie"} {
				if got, want := strings.Join(r.Header.Values(k), " | "), strings.Join(tc.want.Values(k), " | "); got != want {
					t.Errorf("%s reaching the app: %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestStripTetherQuery(t *testing.T) {
	for raw, want := range map[string]string{
		"":                                     "",
		"a=1&b=2":                              "a=1&b=2",
		appAuthCodeParam + "=secret":           "",
		"a=1&" + appAuthCodeParam + "=x&b=%20": "a=1&b=%20",
		"TETHER_AUTH_CODE=x&b":                 "b",
		"tether%5Fauth%5Fcode=x&token=y":       "token=y",
	} {
		if got := stripTetherQuery(raw); got != want {
			t.Errorf("stripTetherQuery(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestFilterAppCookies: an app cannot set Tether's cookies, nor cookies for
// a wider domain than its own host (the dashboard's, or other apps').
func TestFilterAppCookies(t *testing.T) {
	tests := []struct {
		set, want string // "" want: dropped
	}{
		{"sid=1; Path=/; HttpOnly", "sid=1; Path=/; HttpOnly"},
		{"sid=1; Path=/; Domain=apps.example.com", "sid=1; Path=/"},
		{"sid=1; Domain=.example.com; Secure", "sid=1; Secure"},
		{"sid=1; Domain=sub--dev--bob.apps.example.com", "sid=1"},
		{tether.SessionCookie + "=x; Path=/; Domain=example.com", ""},
		{tether.SessionCookieSecure + "=x; Path=/; Secure", ""},
		{appTokenCookie + "=x; Path=/", ""},
		{appTokenCookieSecure + "=x; Path=/; Secure", ""},
		{"Tether_Session=x", ""},
		{"__Secure-tether_x=x; Secure", ""},
		{"not a cookie", ""},
	}
	for _, tc := range tests {
		resp := &http.Response{Header: http.Header{"Set-Cookie": {tc.set}}}
		filterAppCookies(resp, "")
		if got := resp.Header.Get("Set-Cookie"); got != tc.want {
			t.Errorf("app sets %q: %q passes, want %q", tc.set, got, tc.want)
		}
	}
}
