package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// An API token is shown once, listed without its secret, works in the
// session header and as a bearer, records its use, and is refused once
// deleted.
func TestAPITokenLifecycle(t *testing.T) {
	clock := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts := newTestServer(t, Options{Now: clock.Now}, nil)
	alice := ts.firstAdmin("alice")

	var created tether.CreateAPITokenResponse
	ts.must(201, alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "ci"}, &created)
	if !strings.HasPrefix(created.Token, tether.APITokenPrefix) || created.Name != "ci" {
		t.Fatalf("created %+v", created)
	}
	if want := clock.Now().Add(DefaultTokenLifetime); !created.ExpiresAt.Equal(want) {
		t.Errorf("expires %v, want %v (the default lifetime)", created.ExpiresAt, want)
	}
	var list []tether.APIToken
	body := ts.must(200, alice, "GET", "/api/v2/users/me/tokens", nil, &list)
	if len(list) != 1 || list[0].ID != created.ID || list[0].LastUsedAt != nil {
		t.Fatalf("list %s", body)
	}
	if strings.Contains(body, created.Token) || strings.Contains(body, store.HashToken(created.Token)) {
		t.Fatalf("the listing shows the secret or its hash: %s", body)
	}
	if n, _ := ts.store.ListAPITokens(testContext(t), created.ID); len(n) != 0 {
		t.Fatal("store lists tokens by the wrong key")
	}

	var me tether.User
	ts.must(200, created.Token, "GET", "/api/v2/users/me", nil, &me)
	if me.Username != "alice" {
		t.Fatalf("token is %s's", me.Username)
	}
	r, _ := http.NewRequest("GET", ts.http.URL+"/api/v2/users/me", nil)
	r.Header.Set("Authorization", "Bearer "+created.Token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("bearer: %v %v", resp, err)
	}
	resp.Body.Close()
	ts.must(200, alice, "GET", "/api/v2/users/me/tokens", nil, &list)
	if list[0].LastUsedAt == nil || !list[0].LastUsedAt.Equal(clock.Now()) {
		t.Errorf("last used %v, want %v", list[0].LastUsedAt, clock.Now())
	}

	// A token cannot make tokens, nor sign in a browser.
	code, _, b := ts.call(created.Token, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{}, nil)
	wantError(t, code, b, 403, "cannot create tokens")
	r, _ = http.NewRequest("GET", ts.http.URL+"/api/v2/users/me", nil)
	r.AddCookie(&http.Cookie{Name: tether.SessionCookie, Value: created.Token})
	resp, err = http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("token in the session cookie: %d, want 401", resp.StatusCode)
	}

	code, _, b = ts.call(alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "ci"}, nil)
	wantError(t, code, b, 409, "token named ci already")

	ts.must(204, alice, "DELETE", "/api/v2/users/me/tokens/ci", nil, nil)
	code, _, b = ts.call(created.Token, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, b, 401, "invalid")
	code, _, b = ts.call(alice, "DELETE", "/api/v2/users/me/tokens/ci", nil, nil)
	wantError(t, code, b, 404, "no token ci")

	// By ID too; and unnamed tokens get a name.
	ts.must(201, alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{}, &created)
	if !strings.HasPrefix(created.Name, "token-") {
		t.Errorf("unnamed token called %q", created.Name)
	}
	ts.must(204, alice, "DELETE", "/api/v2/users/me/tokens/"+created.ID.String(), nil, nil)
}

func TestAPITokenLifetime(t *testing.T) {
	clock := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts := newTestServer(t, Options{Now: clock.Now, MaxTokenLifetime: 7 * 24 * time.Hour}, nil)
	alice := ts.firstAdmin("alice")
	tests := []struct {
		name     string
		lifetime time.Duration
		status   int
		want     time.Duration // the token's lifetime
		says     string
	}{
		{"default, capped by the maximum", 0, 201, 7 * 24 * time.Hour, ""},
		{"an hour", time.Hour, 201, time.Hour, ""},
		{"the maximum", 7 * 24 * time.Hour, 201, 7 * 24 * time.Hour, ""},
		{"over the maximum", 8 * 24 * time.Hour, 400, 0, "at most 7d"},
		{"too short", time.Second, 400, 0, "at least 1m"},
		{"negative", -time.Hour, 400, 0, "at least 1m"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var created tether.CreateAPITokenResponse
			req := tether.CreateAPITokenRequest{Name: "t" + string(rune('a'+i)), Lifetime: tether.Duration(tc.lifetime)}
			code, _, b := ts.call(alice, "POST", "/api/v2/users/me/tokens", req, &created)
			if tc.status != 201 {
				wantError(t, code, b, tc.status, tc.says)
				return
			}
			if code != 201 || !created.ExpiresAt.Equal(clock.Now().Add(tc.want)) {
				t.Fatalf("%d %s; want expiry in %s", code, b, tc.want)
			}
		})
	}

	var created tether.CreateAPITokenResponse
	ts.must(201, alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "short", Lifetime: tether.Duration(time.Hour)}, &created)
	ts.must(200, created.Token, "GET", "/api/v2/users/me", nil, nil)
	clock.advance(time.Hour)
	code, _, b := ts.call(created.Token, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, b, 401, "API token short expired")
}

// A suspended user's tokens stop working, and work again once the user is
// reactivated; what ends sessions leaves tokens alone; signing out with a
// token ends it.
func TestAPITokenFollowsItsUser(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	var created tether.CreateAPITokenResponse
	ts.must(201, bob, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "ci"}, &created)

	ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, nil)
	code, _, b := ts.call(created.Token, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, b, 401, "suspended")
	ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserActive}, nil)
	ts.must(200, created.Token, "GET", "/api/v2/users/me", nil, nil)

	bob = ts.login("bob", "bob-secret-pw")
	ts.must(200, bob, "DELETE", "/api/v2/users/me/sessions", nil, nil)
	ts.must(200, created.Token, "GET", "/api/v2/users/me", nil, nil)

	// Admins see and delete others' tokens (to clean up after a leak);
	// members never see others'.
	carol := ts.addUser(alice, "carol", tether.RoleMember)
	code, _, b = ts.call(carol, "GET", "/api/v2/users/bob/tokens", nil, nil)
	wantError(t, code, b, 404, "not found")
	var list []tether.APIToken
	ts.must(200, alice, "GET", "/api/v2/users/bob/tokens", nil, &list)
	if len(list) != 1 || list[0].Name != "ci" {
		t.Fatalf("admin lists bob's tokens: %+v", list)
	}
	code, _, b = ts.call(alice, "POST", "/api/v2/users/bob/tokens", tether.CreateAPITokenRequest{}, nil)
	wantError(t, code, b, 403, "created by their owner")

	ts.must(204, created.Token, "POST", "/api/v2/users/logout", nil, nil)
	code, _, b = ts.call(created.Token, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, b, 401, "invalid")
}

// Deleting a token ends the tunnels opened with it at once; the owner's
// other connections stay.
func TestAPITokenDeleteEndsConnections(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	ts.must(201, alice, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "dev"}, nil)
	var created tether.CreateAPITokenResponse
	ts.must(201, alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "ci"}, &created)
	viaToken := ts.openTunnel(created.Token, "me", "dev")
	viaSession := ts.openTunnel(alice, "me", "dev")
	ts.must(204, alice, "DELETE", "/api/v2/users/me/tokens/ci", nil, nil)
	viaToken.awaitClose("API token it was opened with was deleted")
	viaSession.alive()
}

// A tunnel opened with a token ends when the token expires, saying so.
func TestAPITokenExpiryEndsConnections(t *testing.T) {
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ts := newTestServer(t, Options{Now: clk.Now}, nil)
	alice := ts.firstAdmin("alice")
	ts.must(201, alice, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "dev"}, nil)
	var created tether.CreateAPITokenResponse
	ts.must(201, alice, "POST", "/api/v2/users/me/tokens", tether.CreateAPITokenRequest{Name: "ci", Lifetime: tether.Duration(time.Hour)}, &created)
	s := ts.openTunnel(created.Token, "me", "dev")
	clk.advance(time.Hour + time.Second)
	s.awaitClose("the API token it was opened with expired")
}

// No app ever sees an API token, in any form the server accepts one.
func TestStripCredentialsAPIToken(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	live := f.apiToken(f.owner, "live", time.Hour)
	old := f.apiToken(f.owner, "old", -time.Hour)
	for _, tok := range []string{live, old} {
		r := httptest.NewRequest("GET", "http://app/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Add("Authorization", "Bearer app-api-key")
		r.Header.Set(tether.SessionTokenHeader, tok)
		f.s.stripCredentials(r)
		if got := strings.Join(r.Header.Values("Authorization"), " | "); got != "Bearer app-api-key" {
			t.Errorf("Authorization reaching the app: %q", got)
		}
		if got := r.Header.Get(tether.SessionTokenHeader); got != "" {
			t.Errorf("session header reaching the app: %q", got)
		}
	}
}
