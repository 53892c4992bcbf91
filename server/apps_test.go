package server

import (
	"net/http"
	"net/url"
	"testing"

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
	scopeCookies(resp, "/@alice/dev/apps/web")
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

func TestStripTetherCredentials(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.Header.Set(tether.SessionTokenHeader, "secret")
	r.Header.Set("Cookie", tether.SessionCookie+"=secret; theme=dark; "+appTokenCookie+"=secret2")
	stripTetherCredentials(r)
	if r.Header.Get(tether.SessionTokenHeader) != "" {
		t.Error("session header reached the app")
	}
	if c := r.Header.Get("Cookie"); c != "theme=dark" {
		t.Errorf("Cookie = %q, want only the app's own", c)
	}
}
