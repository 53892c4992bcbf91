package server

import (
	"net"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
)

// FuzzAppHost parses the Host of requests as the server does to find a
// subdomain app (APP--WS--USER.<wildcard>) and decides which paths there
// are the server's (/__tether/). A host that parses names the app host
// that its parts make; valid names make exactly one host; and a path that
// the app would read as under /__tether/, once it cleans it the way web
// servers do, is never the app's.
func FuzzAppHost(f *testing.F) {
	for _, s := range []struct{ host, path string }{
		{"sub--dev--bob.apps.example.com", "/"},
		{"SUB--Dev--BOB.apps.example.com:8080", "/__tether/app-auth"},
		{"a---b--c.apps.example.com", "/__tether"},
		{"x.sub--dev--bob.apps.example.com", "//__tether/"},
		{"sub--dev.apps.example.com", "/./__tether/x"},
		{"sub--dev--bob.apps.example.com.", "/a/../__tether/"},
		{"[::1]:80", "/__tether/../x"},
		{"tether.example.com", "/__TETHER/x"},
	} {
		f.Add(s.host, s.path)
	}
	access := &url.URL{Scheme: "https", Host: accessHost}
	w, err := parseWildcard(wildcardHost, access)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, host, p string) {
		app, ws, user, ok := w.appHost(host)
		if ok {
			// A Host with a port loses it; one that does not split (":[x")
			// is taken whole.
			hostname := strings.ToLower(host)
			if h, _, err := net.SplitHostPort(hostname); err == nil {
				hostname = h
			}
			if app == "" || ws == "" || user == "" || strings.Contains(app+ws+user, ".") {
				t.Fatalf("appHost(%q) = %q, %q, %q", host, app, ws, user)
			}
			if got := w.appHostname(app, ws, user); got != hostname {
				t.Fatalf("appHost(%q) = %q, %q, %q, which make host %q", host, app, ws, user, got)
			}
			valid := tether.ValidateName("app", app) == nil && tether.ValidateName("workspace", ws) == nil && tether.ValidateName("user", user) == nil
			if a, b, c, ok2 := w.appHost(w.appHostname(app, ws, user)); valid && (!ok2 || a != app || b != ws || c != user) {
				t.Fatalf("app host of %q, %q, %q parses as %q, %q, %q (%v)", app, ws, user, a, b, c, ok2)
			}
		}

		// How the app may read the path the proxy sends it.
		sent := (&url.URL{Path: p}).EscapedPath()
		readings := []string{p, path.Clean("/" + p)}
		// A request target is read as a path, "//host/x" included.
		if u, err := url.ParseRequestURI(sent); err == nil {
			readings = append(readings, u.Path, path.Clean("/"+u.Path))
		}
		collapsed := p
		for strings.Contains(collapsed, "//") {
			collapsed = strings.ReplaceAll(collapsed, "//", "/")
		}
		readings = append(readings, collapsed)
		for _, r := range readings {
			if (r == "/__tether" || strings.HasPrefix(r, reservedAppPath)) && !isReservedAppPath(p) {
				t.Fatalf("path %q, which an app may read as %q, goes to the app", p, r)
			}
		}
		if plainPath.MatchString(p) && !strings.HasPrefix(p, "/__tether") && isReservedAppPath(p) {
			t.Fatalf("plain path %q is kept from the app", p)
		}
	})
}

// FuzzAppTokens drives the app sign-in's one-time codes and app tokens
// (apptokens.go) through sequences of issue, redeem, use, revoke, expire
// and the passing of time, against a model of their rules: a code works
// once, within a minute, for its own host; a token works for its own host
// for at most 8 hours, an hour unused, and never beyond its session or
// once the session is revoked; codes and tokens that were never issued
// (anything a caller makes up) never work.
func FuzzAppTokens(f *testing.F) {
	// Instructions of 3 bytes: operation, then two operands.
	f.Add([]byte{0, 0, 0, 1, 0, 0, 2, 0, 0})                   // issue, redeem, use
	f.Add([]byte{0, 0, 0, 1, 0, 1, 1, 0, 0})                   // redeem for another host, then again
	f.Add([]byte{0, 1, 1, 3, 0, 3, 1, 0, 1})                   // a code past its minute
	f.Add([]byte{0, 0, 2, 1, 0, 2, 3, 0, 5, 2, 0, 2})          // a token unused for an hour
	f.Add([]byte{0, 2, 0, 1, 0, 0, 3, 0, 3, 2, 0, 0})          // the session ends first
	f.Add([]byte{0, 0, 0, 1, 0, 0, 4, 0, 0, 2, 0, 0})          // revoked
	f.Add([]byte{0, 0, 0, 1, 0, 0, 3, 0, 7, 5, 0, 0, 2, 0, 0}) // expired and swept
	f.Add([]byte{6, 'x', 'y', 7, 0, 0})                        // made-up code and token

	hosts := []string{"sub--dev--bob.apps.example.com", "auth--dev--bob.apps.example.com", "sub--dev--carol.apps.example.com"}
	steps := []time.Duration{time.Second, 30 * time.Second, 59 * time.Second, 61 * time.Second, 10 * time.Minute,
		59 * time.Minute, 61 * time.Minute, 4 * time.Hour, 9 * time.Hour}

	type session struct {
		hash    string
		user    uuid.UUID
		expires time.Time
		issued  int // codes and tokens ever made for it
	}
	// Revoking a session drops the codes and tokens it holds then; the
	// server checks the session itself on every use (sessionUser), so
	// that one minted in a race with its revocation is refused there.
	type code struct {
		value, host string
		s           int
		expires     time.Time
		tried       bool
		revoked     bool
	}
	type token struct {
		value, host string
		s           int
		expires     time.Time
		lastUsed    time.Time
		revoked     bool
	}

	f.Fuzz(func(t *testing.T, ops []byte) {
		start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		now := start
		sessions := []*session{
			{hash: "s0", user: uuid.New(), expires: start.Add(30 * 24 * time.Hour)},
			{hash: "s1", user: uuid.New(), expires: start.Add(12 * time.Hour)},
			{hash: "s2", user: uuid.New(), expires: start.Add(30 * time.Second)},
		}
		var (
			tokens appTokens
			codes  []*code
			toks   []*token
		)
		// Liveness is checked only while the session has not reached the
		// per-session bound, past which the least recently used goes.
		live := func(s *session) bool { return s.issued < maxAppGrantsPerSession }

		for len(ops) >= 3 {
			op, a, b := ops[0], int(ops[1]), int(ops[2])
			ops = ops[3:]
			switch op % 8 {
			case 0: // issue
				s := sessions[a%len(sessions)]
				host := hosts[b%len(hosts)]
				v := tokens.issueCode(appGrant{userID: s.user, sessionHash: s.hash, host: host, sessionExpires: s.expires}, now)
				exp := now.Add(appAuthCodeLifetime)
				if s.expires.Before(exp) {
					exp = s.expires
				}
				s.issued++
				codes = append(codes, &code{value: v, host: host, s: a % len(sessions), expires: exp})
			case 1: // redeem
				if len(codes) == 0 {
					continue
				}
				c := codes[a%len(codes)]
				host := hosts[b%len(hosts)]
				s := sessions[c.s]
				want := !c.tried && !c.revoked && host == c.host && now.Before(c.expires)
				v, g, ok := tokens.redeem(c.value, host, now)
				c.tried = true
				if ok && !want {
					t.Fatalf("code redeemed when it must not be (tried before %v, revoked %v, host %s for %s, at %v, expires %v)", c.tried, c.revoked, host, c.host, now.Sub(start), c.expires.Sub(start))
				}
				if !ok && want && live(s) {
					t.Fatalf("a fresh code for %s was refused at %v", host, now.Sub(start))
				}
				if ok {
					if g.host != c.host || g.sessionHash != s.hash || g.userID != s.user || g.expires.After(s.expires) || g.expires.After(now.Add(appTokenLifetime)) {
						t.Fatalf("redeemed grant %+v for session %s", g, s.hash)
					}
					s.issued++
					toks = append(toks, &token{value: v, host: c.host, s: c.s, expires: g.expires, lastUsed: now})
				}
			case 2: // use
				if len(toks) == 0 {
					continue
				}
				k := toks[a%len(toks)]
				host := hosts[b%len(hosts)]
				s := sessions[k.s]
				want := !k.revoked && host == k.host && now.Before(k.expires) && now.Sub(k.lastUsed) < appTokenIdle
				g, ok := tokens.lookup(k.value, host, now)
				if ok && !want {
					t.Fatalf("token used when it must not be (revoked %v, host %s for %s, at %v, expires %v, last used %v)", k.revoked, host, k.host, now.Sub(start), k.expires.Sub(start), k.lastUsed.Sub(start))
				}
				if !ok && want && live(s) {
					t.Fatalf("a good token for %s was refused at %v", host, now.Sub(start))
				}
				if ok {
					if g.sessionHash != s.hash || g.userID != s.user || g.host != host {
						t.Fatalf("token's grant %+v is not its session's", g)
					}
					k.lastUsed = now
				}
			case 3: // time passes
				now = now.Add(steps[b%len(steps)])
			case 4: // the session ends
				i := a % len(sessions)
				tokens.revokeSession(sessions[i].hash)
				for _, c := range codes {
					c.revoked = c.revoked || c.s == i
				}
				for _, k := range toks {
					k.revoked = k.revoked || k.s == i
				}
			case 5: // the sweep
				tokens.expire(now)
			case 6: // a made-up code
				if _, _, ok := tokens.redeem(string([]byte{byte(a), byte(b)}), hosts[b%len(hosts)], now); ok {
					t.Fatalf("made-up code %q redeemed", []byte{byte(a), byte(b)})
				}
			case 7: // a made-up token
				if _, ok := tokens.lookup(string([]byte{byte(a), byte(b)}), hosts[b%len(hosts)], now); ok {
					t.Fatalf("made-up token %q accepted", []byte{byte(a), byte(b)})
				}
			}
		}

		// Nothing is kept beyond the bound, and nothing is left once every
		// session has ended.
		tokens.mu.Lock()
		for h, n := range tokens.codes.perSession {
			if n > maxAppGrantsPerSession {
				t.Fatalf("session %s holds %d codes", h, n)
			}
		}
		for h, n := range tokens.tokens.perSession {
			if n > maxAppGrantsPerSession {
				t.Fatalf("session %s holds %d tokens", h, n)
			}
		}
		tokens.mu.Unlock()
		for _, s := range sessions {
			tokens.revokeSession(s.hash)
		}
		if len(tokens.codes.m)+len(tokens.tokens.m)+len(tokens.codes.perSession)+len(tokens.tokens.perSession) != 0 {
			t.Fatalf("after every session ended, %d codes and %d tokens remain", len(tokens.codes.m), len(tokens.tokens.m))
		}
	})
}
