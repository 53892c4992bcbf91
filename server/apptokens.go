package server

import (
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether/store"
)

// App tokens carry a dashboard session to one subdomain app host
// (subdomain.go). Each is bound to the session that minted it: every use
// checks that session and its user again (sessionUser), so signing out, a
// session's expiry, or anything else that deletes the session revokes its
// app tokens at once. The link that brings a token to the app host carries
// only a one-time code: it is good for appAuthCodeLifetime, once, so a link
// that leaks (a browser's history, a proxy's log) opens nothing.
//
// Codes and tokens are kept in memory: a restarted server sends browsers
// through the sign-in redirect again, which is invisible to a signed-in
// user.

const (
	appTokenCookie       = "tether_app_token"
	appTokenCookieSecure = "__Host-tether_app_token"

	// appAuthCodeLifetime is how long the redirect to the app host may
	// take.
	appAuthCodeLifetime = time.Minute
	// appTokenLifetime bounds a token's life, and appTokenIdle its
	// disuse; neither outlives the session. After either, the next page
	// the browser loads goes through the redirect again.
	appTokenLifetime = 8 * time.Hour
	appTokenIdle     = time.Hour
	// maxAppGrantsPerSession bounds the codes, and the tokens, that one
	// session holds at once: a browser needs one token per app host it
	// uses, and a script that mints more must not fill the server's
	// memory. Past it, the session's least recently used one goes.
	maxAppGrantsPerSession = 64
)

// appGrant is what a code or a token stands for.
type appGrant struct {
	userID         uuid.UUID
	sessionHash    string
	host           string // the app's host name, lowercase, without a port
	sessionExpires time.Time
	expires        time.Time
	lastUsed       time.Time // tokens only
}

// appTokens are the codes and tokens issued, by hash.
type appTokens struct {
	mu     sync.Mutex
	codes  grants
	tokens grants
}

// grants are codes or tokens by hash, counted per session.
type grants struct {
	m          map[string]appGrant
	perSession map[string]int
}

func (gs *grants) add(hash string, g appGrant) {
	if gs.m == nil {
		gs.m, gs.perSession = map[string]appGrant{}, map[string]int{}
	}
	if gs.perSession[g.sessionHash] >= maxAppGrantsPerSession {
		var lru string
		for k, o := range gs.m {
			if o.sessionHash == g.sessionHash && (lru == "" || o.lastUsed.Before(gs.m[lru].lastUsed)) {
				lru = k
			}
		}
		gs.remove(lru)
	}
	gs.m[hash] = g
	gs.perSession[g.sessionHash]++
}

func (gs *grants) remove(hash string) {
	g, ok := gs.m[hash]
	if !ok {
		return
	}
	delete(gs.m, hash)
	if gs.perSession[g.sessionHash]--; gs.perSession[g.sessionHash] <= 0 {
		delete(gs.perSession, g.sessionHash)
	}
}

// removeIf removes every grant that drop says to.
func (gs *grants) removeIf(drop func(appGrant) bool) {
	for k, g := range gs.m {
		if drop(g) {
			gs.remove(k)
		}
	}
}

// issueCode returns a one-time code for g.
func (t *appTokens) issueCode(g appGrant, now time.Time) string {
	code := newToken()
	g.expires = now.Add(appAuthCodeLifetime)
	if g.sessionExpires.Before(g.expires) {
		g.expires = g.sessionExpires
	}
	g.lastUsed = now
	t.mu.Lock()
	defer t.mu.Unlock()
	t.codes.add(store.HashToken(code), g)
	return code
}

// redeem exchanges a code issued for host for a token, once.
func (t *appTokens) redeem(code, host string, now time.Time) (string, appGrant, bool) {
	if code == "" {
		return "", appGrant{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	h := store.HashToken(code)
	g, ok := t.codes.m[h]
	if !ok {
		return "", appGrant{}, false
	}
	t.codes.remove(h) // used or not, a code is good for one try
	if g.host != host || !now.Before(g.expires) {
		return "", appGrant{}, false
	}
	token := newToken()
	g.expires = now.Add(appTokenLifetime)
	if g.sessionExpires.Before(g.expires) {
		g.expires = g.sessionExpires
	}
	g.lastUsed = now
	t.tokens.add(store.HashToken(token), g)
	return token, g, true
}

// lookup returns the grant of a token valid for host now, and counts the
// use.
func (t *appTokens) lookup(token, host string, now time.Time) (appGrant, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := store.HashToken(token)
	g, ok := t.tokens.m[h]
	if !ok || g.host != host {
		return appGrant{}, false
	}
	if tokenExpired(g, now) {
		t.tokens.remove(h)
		return appGrant{}, false
	}
	g.lastUsed = now
	t.tokens.m[h] = g
	return g, true
}

// revokeSession drops the codes and tokens of a session that ended. They
// would fail their next check anyway; this frees them at once.
func (t *appTokens) revokeSession(sessionHash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ofSession := func(g appGrant) bool { return g.sessionHash == sessionHash }
	t.codes.removeIf(ofSession)
	t.tokens.removeIf(ofSession)
}

// expire drops codes and tokens past their lifetime.
func (t *appTokens) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.codes.removeIf(func(g appGrant) bool { return !now.Before(g.expires) })
	t.tokens.removeIf(func(g appGrant) bool { return tokenExpired(g, now) })
}

func tokenExpired(g appGrant, now time.Time) bool {
	return !now.Before(g.expires) || now.Sub(g.lastUsed) >= appTokenIdle
}
