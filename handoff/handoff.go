// Package handoff is the token with which the primary server hands a user
// over to a workspace proxy. Users sign in only at the primary; a proxy
// never sees their session token or password. When a browser asks a proxy
// for a terminal or an app it holds no grant for, the proxy sends it to
// the primary, which checks the user (or, for a public app, nobody) by the
// same rules as for its own terminal and apps, and sends the browser back
// to the proxy with a hand-off token in the URL:
//
//	proxy  → 303 PRIMARY/api/v2/workspaceproxies/auth-redirect?redirect_uri=PROXY/…
//	primary → 303 PROXY/__tether/proxy-auth?tether_handoff=TOKEN&path=/…
//	proxy  → redeems TOKEN once, sets a host-only cookie, 303 /…
//
// A token names one proxy (its audience), one user (none for a public app),
// one workspace, and one thing in it: the web terminal, or one app (with
// its URL, sharing level and, for a subdomain app, the one host it is good
// for). It is good for Lifetime and, at each proxy, once (Redeemed).
//
// Tokens are signed with Ed25519 by the primary, whose private key is a
// deployment secret in the store that only the primary's replicas read;
// proxies get the public key when they register, so a proxy can check a
// token but cannot make one, neither for itself nor for another proxy.
//
// The format is base64url(JSON claims) "." base64url(signature of the
// first part).
package handoff

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// Lifetime is how long a token may take from the primary to the proxy: a
// redirect, so seconds, with room for a slow link and clocks a little
// apart.
const Lifetime = time.Minute

// clockSkew is how far in the future a token's issue time may be by the
// proxy's clock.
const clockSkew = 30 * time.Second

// maxTokenLength bounds what Verify decodes: a token with an app's URL is
// well under 2 KB.
const maxTokenLength = 8 << 10

// Scope is what a token opens.
type Scope string

const (
	ScopeTerminal Scope = "terminal" // the web terminal of the workspace
	ScopeApp      Scope = "app"      // one app of the workspace
)

// Claims are what a token says.
type Claims struct {
	// ID is random: a proxy redeems each token once.
	ID string `json:"jti"`
	// Proxy is the one proxy the token is for.
	Proxy    uuid.UUID `json:"aud"`
	IssuedAt int64     `json:"iat"` // Unix seconds
	Expires  int64     `json:"exp"` // Unix seconds

	// User is the signed-in user, uuid.Nil for anyone (a public app).
	// Session is the hash of the session the user signed in with: the
	// proxy asks the primary about it at every heartbeat, and ends what
	// it serves under a session that ended.
	User     uuid.UUID `json:"uid"`
	Username string    `json:"usr,omitempty"`
	Session  string    `json:"sid,omitempty"`

	Workspace     uuid.UUID `json:"wid"`
	WorkspaceName string    `json:"wsn"`
	OwnerID       uuid.UUID `json:"oid"`
	Owner         string    `json:"own"`

	Scope Scope `json:"scp"`
	// App is the app a ScopeApp token opens, as the primary resolved it.
	App *tether.App `json:"app,omitempty"`
	// Host is, for a subdomain app, the lowercase host name (no port) the
	// token is good for; "" for path-based apps and the terminal.
	Host string `json:"hst,omitempty"`

	// Generation names the proxy token the primary knew when it signed:
	// a grant shown after the token was regenerated (VerifyGrant) is
	// refused, though the proxy's ID stays. Opaque to the proxy.
	Generation string `json:"gen,omitempty"`
}

// Errors Verify returns, for logs and tests; browsers see one message.
var (
	ErrMalformed  = errors.New("hand-off token is malformed")
	ErrSignature  = errors.New("hand-off token's signature is not the primary's")
	ErrWrongProxy = errors.New("hand-off token is for another workspace proxy")
	ErrExpired    = errors.New("hand-off token has expired")
)

// Sign returns the token for c.
func Sign(key ed25519.PrivateKey, c Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	sig := ed25519.Sign(key, []byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Verify checks a token's signature, audience and time, and returns its
// claims. It does not check whether the token was used before (Redeemed).
func Verify(key ed25519.PublicKey, token string, proxy uuid.UUID, now time.Time) (Claims, error) {
	c, err := parse(key, token, proxy)
	if err != nil {
		return Claims{}, err
	}
	if now.Unix() >= c.Expires || time.Unix(c.IssuedAt, 0).After(now.Add(clockSkew)) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// VerifyGrant checks a token that a proxy redeemed earlier and now shows
// the primary as its proof of a grant, when it asks to coordinate a tunnel
// to the token's workspace: the signature, the audience, and that it was
// issued less than maxAge ago (the life of the grant it became). Its short
// Expires, meant for the redirect, does not apply. The caller decides
// whether what the token granted still holds: the session, the user's
// access, the proxy's token (Claims.Generation).
func VerifyGrant(key ed25519.PublicKey, token string, proxy uuid.UUID, now time.Time, maxAge time.Duration) (Claims, error) {
	c, err := parse(key, token, proxy)
	if err != nil {
		return Claims{}, err
	}
	issued := time.Unix(c.IssuedAt, 0)
	if !now.Before(issued.Add(maxAge)) || issued.After(now.Add(clockSkew)) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// parse checks what Verify and VerifyGrant have in common: everything but
// the time.
func parse(key ed25519.PublicKey, token string, proxy uuid.UUID) (Claims, error) {
	if len(token) > maxTokenLength {
		return Claims{}, ErrMalformed
	}
	payload, sigText, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize || len(key) != ed25519.PublicKeySize {
		return Claims{}, ErrMalformed
	}
	if !ed25519.Verify(key, []byte(payload), sig) {
		return Claims{}, ErrSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || c.ID == "" || c.Workspace == uuid.Nil {
		return Claims{}, ErrMalformed
	}
	switch {
	case c.Scope == ScopeTerminal && c.App == nil && c.User != uuid.Nil:
	case c.Scope == ScopeApp && c.App != nil:
	default:
		return Claims{}, ErrMalformed
	}
	if c.Proxy != proxy {
		return Claims{}, ErrWrongProxy
	}
	if c.Expires-c.IssuedAt > int64(Lifetime/time.Second) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// Redeemed remembers the IDs of the tokens a proxy has accepted until they
// expire, so that each is accepted once: a token that leaks from a
// browser's history or a log opens nothing. The zero value is ready.
type Redeemed struct {
	mu  sync.Mutex
	ids map[string]time.Time // token ID → its expiry; guarded by mu
}

// Once reports whether c is redeemed now for the first time.
func (r *Redeemed) Once(c Claims, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]time.Time{}
	}
	for id, exp := range r.ids {
		if !now.Before(exp) {
			delete(r.ids, id)
		}
	}
	if _, used := r.ids[c.ID]; used {
		return false
	}
	// Kept past the expiry by the skew Verify allows, so that no clock
	// step reopens the window.
	r.ids[c.ID] = time.Unix(c.Expires, 0).Add(clockSkew)
	return true
}
