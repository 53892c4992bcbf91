package server

import (
	"cmp"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/store"
)

// A workspace proxy's grants: what the hand-off tokens it redeemed let a
// browser open. A browser holds one grant per host of the proxy, in a
// host-only cookie; a grant belongs to one user (or to nobody, for public
// apps) and one of their sessions at the primary, and holds a scope per
// terminal or app the primary handed over. A token for another user or
// session replaces the grant. Grants live in the proxy's memory: a
// restarted proxy sends browsers through the primary again, which a
// signed-in user does not notice.
//
// The primary is asked at every heartbeat about the sessions behind the
// grants; one that ended (signed out, expired, the user suspended or
// deleted) ends its grants and their terminals.

const (
	proxyGrantCookie       = "tether_proxy_grant"
	proxyGrantCookieSecure = "__Host-tether_proxy_grant"
	// proxyGrantLifetime bounds a grant's life, as appTokenLifetime does
	// an app token's.
	proxyGrantLifetime = 8 * time.Hour
	// maxProxyGrants bounds the grants a proxy holds; past it, the
	// oldest goes.
	maxProxyGrants = 100_000
	// maxScopesPerGrant bounds the scopes of one grant.
	maxScopesPerGrant = 256
)

func grantCookieName(secure bool) string {
	if secure {
		return proxyGrantCookieSecure
	}
	return proxyGrantCookie
}

func hasGrantCookie(r *http.Request) bool {
	for _, c := range r.Cookies() {
		if c.Name == proxyGrantCookie || c.Name == proxyGrantCookieSecure {
			return true
		}
	}
	return false
}

func terminalScope(owner, ws string) string {
	return "terminal:" + strings.ToLower(owner+"/"+ws)
}

func appScope(owner, ws, app string) string {
	return "app:" + strings.ToLower(owner+"/"+ws+"/"+app)
}

func claimsScope(c handoff.Claims) string {
	if c.Scope == handoff.ScopeTerminal {
		return terminalScope(c.Owner, c.WorkspaceName)
	}
	return appScope(c.Owner, c.WorkspaceName, c.App.Name)
}

// proxyGrant is one browser's grant on one host of the proxy.
type proxyGrant struct {
	hash    string // of its cookie's token
	user    uuid.UUID
	session string // the primary's session hash, "" for nobody
	host    string // the host it was issued on, lowercase without port
	expires time.Time
	scopes  map[string]handoff.Claims
	tokens  map[string]string     // by scope: the hand-off token behind it, which the primary asks to see (forWorkspace)
	live    map[*liveEnd]struct{} // terminals open under it
}

type liveEnd struct{ end func(reason string) }

type proxyGrants struct {
	mu     sync.Mutex
	byHash map[string]*proxyGrant // guarded by mu
}

// add records a redeemed token: as a scope of the request's grant if it
// is the same user's and session's, else of a new grant. It returns the
// cookie's token and expiry.
func (gs *proxyGrants) add(r *http.Request, c handoff.Claims, handoffToken string) (token string, expires time.Time) {
	host := strings.ToLower(hostOnly(r.Host))
	now := time.Now()
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if g := gs.fromRequestLocked(r, host, now); g != nil && g.user == c.User && g.session == c.Session && len(g.scopes) < maxScopesPerGrant {
		// A new token on the same cookie keeps its value: the browser
		// has it already. Re-set it with the same expiry.
		g.scopes[claimsScope(c)] = c
		g.tokens[claimsScope(c)] = handoffToken
		if t, err := singleCookie(r, grantCookieName(false)); err == nil && t != "" {
			return t, g.expires
		}
		if t, err := singleCookie(r, grantCookieName(true)); err == nil && t != "" {
			return t, g.expires
		}
	}
	if len(gs.byHash) >= maxProxyGrants {
		gs.evictOldestLocked()
	}
	token = newToken()
	g := &proxyGrant{
		hash: store.HashToken(token), user: c.User, session: c.Session, host: host,
		expires: now.Add(proxyGrantLifetime), scopes: map[string]handoff.Claims{claimsScope(c): c},
		tokens: map[string]string{claimsScope(c): handoffToken},
		live:   map[*liveEnd]struct{}{},
	}
	gs.byHash[g.hash] = g
	return token, g.expires
}

func (gs *proxyGrants) evictOldestLocked() {
	var oldest *proxyGrant
	for _, g := range gs.byHash {
		if oldest == nil || g.expires.Before(oldest.expires) {
			oldest = g
		}
	}
	if oldest != nil {
		gs.dropLocked(oldest, "signed out on this workspace proxy")
	}
}

// fromRequestLocked returns the grant whose cookie the request carries,
// if it is good on host.
func (gs *proxyGrants) fromRequestLocked(r *http.Request, host string, now time.Time) *proxyGrant {
	for _, name := range []string{proxyGrantCookie, proxyGrantCookieSecure} {
		t, err := singleCookie(r, name)
		if err != nil || t == "" {
			continue
		}
		g := gs.byHash[store.HashToken(t)]
		if g == nil || g.host != host {
			continue
		}
		if !now.Before(g.expires) {
			gs.dropLocked(g, "your sign-in on this workspace proxy expired")
			continue
		}
		return g
	}
	return nil
}

// lookup returns the request's grant and its scope's claims. host, for a
// subdomain app, is the host the claims must be for.
func (gs *proxyGrants) lookup(r *http.Request, scope, host string) (*proxyGrant, handoff.Claims, bool) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.fromRequestLocked(r, strings.ToLower(hostOnly(r.Host)), time.Now())
	if g == nil {
		return nil, handoff.Claims{}, false
	}
	c, ok := g.scopes[scope]
	if !ok || c.Host != host {
		return nil, handoff.Claims{}, false
	}
	return g, c, true
}

// track registers a live terminal under g; the returned function
// unregisters it.
func (gs *proxyGrants) track(g *proxyGrant, end func(reason string)) func() {
	le := &liveEnd{end: end}
	gs.mu.Lock()
	if _, ok := gs.byHash[g.hash]; !ok {
		gs.mu.Unlock()
		end("your sign-in on this workspace proxy ended")
		return func() {}
	}
	g.live[le] = struct{}{}
	gs.mu.Unlock()
	return func() {
		gs.mu.Lock()
		delete(g.live, le)
		gs.mu.Unlock()
	}
}

// forWorkspace returns the hand-off tokens behind the live grants for
// workspace id, newest first, at most tether.MaxProxyGrantsShown: the
// primary coordinates the proxy's tunnel to the workspace's agent only
// while one of them still holds.
func (gs *proxyGrants) forWorkspace(id uuid.UUID) []string {
	type shown struct {
		token  string
		issued int64
	}
	var all []shown
	now := time.Now()
	gs.mu.Lock()
	for _, g := range gs.byHash {
		if !now.Before(g.expires) {
			continue
		}
		for scope, c := range g.scopes {
			if c.Workspace == id {
				all = append(all, shown{g.tokens[scope], c.IssuedAt})
			}
		}
	}
	gs.mu.Unlock()
	slices.SortFunc(all, func(a, b shown) int { return cmp.Compare(b.issued, a.issued) })
	out := make([]string, 0, min(len(all), tether.MaxProxyGrantsShown))
	for _, s := range all {
		if len(out) == tether.MaxProxyGrantsShown {
			break
		}
		out = append(out, s.token)
	}
	return out
}

// sessions lists the primary's sessions behind the grants.
func (gs *proxyGrants) sessions() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, g := range gs.byHash {
		if g.session != "" && !seen[g.session] && len(out) < maxEndedSessionsAsked {
			seen[g.session] = true
			out = append(out, g.session)
		}
	}
	return out
}

// endSession drops the grants of a session that ended, and their
// terminals.
func (gs *proxyGrants) endSession(session, reason string) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for _, g := range gs.byHash {
		if g.session == session {
			gs.dropLocked(g, reason)
		}
	}
}

func (gs *proxyGrants) endAll(reason string) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	for _, g := range gs.byHash {
		gs.dropLocked(g, reason)
	}
}

func (gs *proxyGrants) dropLocked(g *proxyGrant, reason string) {
	delete(gs.byHash, g.hash)
	for le := range g.live {
		go le.end(reason) // closing a WebSocket may block: not under mu
	}
	g.live = map[*liveEnd]struct{}{}
}
