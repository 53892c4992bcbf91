package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// tokenStore says of every token whether it is one of the server's, for
// stripCredentials; nothing else of the store is used.
type tokenStore struct {
	store.Store
	ours bool
}

func (s tokenStore) SessionByTokenHash(context.Context, string) (store.Session, error) {
	if s.ours {
		return store.Session{}, nil
	}
	return store.Session{}, store.ErrNotFound
}

func (s tokenStore) APITokenByHash(context.Context, string) (store.APIToken, error) {
	return store.APIToken{}, store.ErrNotFound
}

func (s tokenStore) WorkspaceByAgentTokenHash(context.Context, string) (store.Workspace, error) {
	if s.ours {
		return store.Workspace{}, nil
	}
	return store.Workspace{}, store.ErrNotFound
}

// credentialRequest builds a request from fuzzed header values; origins
// holds one Origin header per line.
func credentialRequest(method, origins, secFetchSite, cookie, csrf, authorization, sessionHeader, agentHeader, upgrade string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/v2/users", nil)
	r.Method = method
	r.Host = accessHost
	set := func(k, v string) {
		if v != "" {
			r.Header[k] = append(r.Header[k], v)
		}
	}
	if origins != "" {
		for _, o := range strings.SplitN(origins, "\n", 4) {
			r.Header["Origin"] = append(r.Header["Origin"], o)
		}
	}
	set("Sec-Fetch-Site", secFetchSite)
	set("Cookie", cookie)
	set(tether.CSRFHeader, csrf)
	set("Authorization", authorization)
	set(tether.SessionTokenHeader, sessionHeader)
	set(tether.AgentTokenHeader, agentHeader)
	set("Upgrade", upgrade)
	return r
}

// FuzzRequestCredentials reads a request's credentials and provenance as
// the server does (the session cookie and token headers in auth.go, the
// Origin and CSRF rules in csrf.go) and checks the rules of issue 10: a
// state-changing request that the session cookie alone authenticates
// passes only with the dashboard's exact origin, or without Origin but
// with the CSRF header from a page that is not cross-site; the cookie is
// never consulted when a token header is present, and two cookies of the
// session's name give no session; and stripCredentials leaves nothing the
// server would take as a credential, while passing what it would not.
func FuzzRequestCredentials(f *testing.F) {
	f.Add(true, "POST", "http://tether.example.com", "", "tether_session=abc", "", "", "", "", "")
	f.Add(true, "POST", "https://tether.example.com", "same-origin", "__Host-tether_session=abc", "", "", "", "", "")
	f.Add(false, "POST", "", "", "tether_session=abc", "1", "", "", "", "")
	f.Add(false, "POST", "", "same-site", "tether_session=abc", "1", "", "", "", "")
	f.Add(false, "POST", "http://pub--dev--bob.apps.example.com", "same-site", "tether_session=abc", "", "", "", "", "")
	f.Add(false, "PUT", "http://tether.example.com\nhttp://evil.test", "", "tether_session=abc", "", "", "", "", "")
	f.Add(false, "DELETE", "null", "", "tether_session=abc; tether_session=def", "", "", "", "", "")
	f.Add(false, "GET", "http://evil.test", "cross-site", "tether_session=abc", "", "", "", "", "websocket")
	f.Add(false, "POST", "", "", "tether_session=abc", "", "Bearer s3cret", "", "", "")
	f.Add(false, "POST", "", "", "tether_session=abc; TETHER_APP_TOKEN=x; other=1", "", "bearer  ", "", "", "")
	f.Add(false, "POST", "http://TETHER.example.com:80/", "", "tether_session=abc", "", "Basic dTpw", "tok", "agent", "")
	f.Add(false, "GET", "", "", `a="b"; __Secure-tether_x=1; tether_session="quoted"`, "", "Bearer app-key", "", "", "")

	f.Fuzz(func(t *testing.T, https bool, method, origins, secFetchSite, cookie, csrf, authorization, sessionHeader, agentHeader, upgrade string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") {
			return // net/http refuses such request lines
		}
		scheme := "http"
		if https {
			scheme = "https"
		}
		s := &Server{accessURL: &url.URL{Scheme: scheme, Host: accessHost}}
		r := credentialRequest(method, origins, secFetchSite, cookie, csrf, authorization, sessionHeader, agentHeader, upgrade)

		// Which credential counts.
		headerCred := hasHeaderCredential(r)
		token, fromCookie, err := s.sessionToken(r)
		var cookieValues []string
		for _, c := range r.Cookies() {
			if c.Name == s.sessionCookieName() {
				cookieValues = append(cookieValues, c.Value)
			}
		}
		switch {
		case headerCred && (fromCookie || err != nil || token != headerToken(r, tether.SessionTokenHeader)):
			t.Fatalf("with a token header, sessionToken = %q, %v, %v", token, fromCookie, err)
		case !headerCred && len(cookieValues) > 1 && (err == nil || token != ""):
			t.Fatalf("two session cookies %q gave token %q, err %v", cookieValues, token, err)
		case !headerCred && len(cookieValues) == 1 && (err != nil || token != cookieValues[0] || fromCookie != (token != "")):
			t.Fatalf("session cookie %q gave token %q, %v, %v", cookieValues[0], token, fromCookie, err)
		case !headerCred && len(cookieValues) == 0 && (err != nil || token != "" || fromCookie):
			t.Fatalf("no session cookie gave token %q, %v, %v", token, fromCookie, err)
		}

		// Whether the request proves where it comes from.
		perr := s.checkProvenance(r)
		if perr != nil && tether.ErrorCode(perr) != tether.EFORBIDDEN {
			t.Fatalf("provenance refusal %v is not a forbidden error", perr)
		}
		if !changesState(r) || headerCred {
			if perr != nil {
				t.Fatalf("%s with header credential %v refused: %v", method, headerCred, perr)
			}
		} else if perr == nil {
			if vals := r.Header.Values("Origin"); len(vals) > 0 {
				if len(vals) != 1 || !denotesOrigin(vals[0], s.accessURL) {
					t.Fatalf("%s from Origin %q passed for %s", method, vals, s.accessURL)
				}
			} else {
				if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
					t.Fatalf("%s with Sec-Fetch-Site %q passed", method, sfs)
				}
				if hasSessionCookie(r) && r.Header.Get(tether.CSRFHeader) == "" {
					t.Fatalf("%s with the session cookie, no Origin and no %s passed", method, tether.CSRFHeader)
				}
			}
		}

		// What reaches an app.
		for _, ours := range []bool{true, false} {
			s.store = tokenStore{ours: ours}
			out := r.Clone(context.Background())
			s.stripCredentials(out)
			if hasHeaderCredential(out) && ours {
				t.Fatalf("stripped request still carries a token header: %q", out.Header)
			}
			for _, h := range []string{tether.SessionTokenHeader, tether.AgentTokenHeader} {
				if len(out.Header.Values(h)) > 0 {
					t.Fatalf("stripped request still has %s", h)
				}
			}
			if !ours && !slices.Equal(out.Header.Values("Authorization"), r.Header.Values("Authorization")) {
				t.Fatalf("an app's own Authorization %q became %q", r.Header.Values("Authorization"), out.Header.Values("Authorization"))
			}
			for _, line := range out.Header.Values("Cookie") {
				for _, part := range strings.Split(line, ";") {
					name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
					n := strings.ToLower(strings.Trim(name, `" `))
					if strings.HasPrefix(n, "tether_") || strings.HasPrefix(n, "__host-tether") || strings.HasPrefix(n, "__secure-tether") {
						t.Fatalf("stripped request still sends cookie %q (Cookie: %q)", name, line)
					}
				}
			}
			if tok, _, _ := s.sessionToken(out); tok != "" && ours {
				t.Fatalf("stripped request still yields session token %q", tok)
			}
			var kept, want []string
			for _, c := range out.Cookies() {
				kept = append(kept, c.Name+"="+c.Value)
			}
			for _, c := range r.Cookies() {
				if !isTetherCookie(c.Name) {
					want = append(want, c.Name+"="+c.Value)
				}
			}
			if !slices.Equal(kept, want) {
				t.Fatalf("the app's cookies %q became %q", want, kept)
			}
		}
	})
}

// denotesOrigin reports whether an Origin header names base's origin, by
// the URL standard's rules: same scheme and host (in any case), same port
// once defaults are filled in, and nothing but an optional "/" after them.
func denotesOrigin(header string, base *url.URL) bool {
	if strings.ContainsAny(header, "@\\ \t\r\n") {
		return false
	}
	u, err := url.Parse(header)
	if err != nil || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Hostname(), base.Hostname()) && port(u) == port(base)
}
