package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
	"golang.org/x/crypto/bcrypt"
)

// sessionLifetime is how long a session token stays valid.
const sessionLifetime = 30 * 24 * time.Hour

// Passwords must be at least this long; bcrypt reads at most 72 bytes.
const (
	minPasswordLength = 8
	maxPasswordLength = 72
)

// newToken returns a fresh 256-bit bearer secret.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashPassword(pw string) ([]byte, error) {
	if len(pw) < minPasswordLength {
		return nil, tether.Errorf(tether.EINVALID, "password must be at least %d characters", minPasswordLength)
	}
	if len(pw) > maxPasswordLength {
		return nil, tether.Errorf(tether.EINVALID, "password must be at most %d bytes", maxPasswordLength)
	}
	return bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
}

// dummyHash keeps failed logins for unknown users as slow as for known ones,
// so response times do not reveal which usernames exist.
// It is computed on first use, not at start, since every tether command
// links this package.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	return h
})

// Where a request's credentials come from. A request is "cookie
// authenticated" when the dashboard's session cookie is its only
// credential: browsers attach cookies to requests that other pages make, so
// such a request must also prove it came from the dashboard (csrf.go).
// Credentials in headers need no such proof: no page can make a browser
// send them to another origin (that needs a CORS preflight, which this
// server never grants).

// headerToken returns the credential in the named header or in an
// "Authorization: Bearer" header.
func headerToken(r *http.Request, header string) string {
	if t := r.Header.Get(header); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// hasHeaderCredential reports whether the request carries a token in a
// header: a session or agent token header, or a bearer Authorization. The
// cookie is then never consulted.
func hasHeaderCredential(r *http.Request) bool {
	return r.Header.Get(tether.SessionTokenHeader) != "" || r.Header.Get(tether.AgentTokenHeader) != "" ||
		r.Header.Get(tether.ProxyTokenHeader) != "" ||
		headerToken(r, tether.SessionTokenHeader) != ""
}

// sessionCookieName is the dashboard's session cookie on this server: the
// __Host- form on https, which no other host of the site can set, shadow
// or read, and the plain name on http, where browsers refuse __Host-.
func (s *Server) sessionCookieName() string {
	if s.accessURL.Scheme == "https" {
		return tether.SessionCookieSecure
	}
	return tether.SessionCookie
}

// isTetherCookie reports whether a cookie name is one of Tether's own, in
// any of its forms: the session, app tokens, and names reserved for them.
// Apps never see these cookies and may not set them.
func isTetherCookie(name string) bool {
	n := strings.ToLower(name)
	for _, prefix := range []string{"tether_", "__host-tether", "__secure-tether"} {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// hasSessionCookie reports whether the request carries a session cookie
// under any of its names, valid or not.
func hasSessionCookie(r *http.Request) bool {
	for _, c := range r.Cookies() {
		if c.Name == tether.SessionCookie || c.Name == tether.SessionCookieSecure {
			return true
		}
	}
	return false
}

// errTossedCookie refuses a request with two cookies of one of Tether's
// names.
func errTossedCookie(name string) error {
	return tether.Errorf(tether.EUNAUTHORIZED,
		"your browser sent two %s cookies, and one of them was set by another site or app: clear this site's cookies and sign in again", name)
}

// singleCookie returns the value of the request's cookie called name, ""
// if there is none. Two of them mean that another host of the same site
// set one for a parent domain (cookie tossing): browsers send both, with
// nothing to tell which is whose, so the request gets neither rather than
// the wrong one, which would sign the browser in as someone else.
func singleCookie(r *http.Request, name string) (string, error) {
	var value string
	n := 0
	for _, c := range r.Cookies() {
		if c.Name == name {
			value = c.Value
			n++
		}
	}
	if n > 1 {
		return "", errTossedCookie(name)
	}
	return value, nil
}

// sessionToken returns the request's session token: from the session
// header or a bearer Authorization, or, when the request carries no token
// header at all, from the dashboard's cookie.
func (s *Server) sessionToken(r *http.Request) (token string, fromCookie bool, err error) {
	if hasHeaderCredential(r) {
		return headerToken(r, tether.SessionTokenHeader), false, nil
	}
	token, err = singleCookie(r, s.sessionCookieName())
	return token, token != "", err
}

// requestSessionHash is the store hash of the request's session token, ""
// without one, for code that has authenticated the request already.
func (s *Server) requestSessionHash(r *http.Request) string {
	token, _, err := s.sessionToken(r)
	if err != nil || token == "" {
		return ""
	}
	return store.HashToken(token)
}

var errNoSession = tether.Errorf(tether.EUNAUTHORIZED, "you are not signed in: run `tether login URL`, or send a session token in the %s header", tether.SessionTokenHeader)

// authenticateUser returns the user behind the request's session token.
// What makes a session and its user good is decided in sessionUser.
func (s *Server) authenticateUser(r *http.Request) (store.User, error) {
	_, u, err := s.authenticateSession(r)
	return u, err
}

// authenticateSession returns the request's session and its user.
func (s *Server) authenticateSession(r *http.Request) (store.Session, store.User, error) {
	token, fromCookie, err := s.sessionToken(r)
	if err != nil {
		return store.Session{}, store.User{}, err
	}
	if token == "" {
		return store.Session{}, store.User{}, errNoSession
	}
	return s.credentialUser(r.Context(), store.HashToken(token), fromCookie)
}

// sessionUser returns the session stored under hash and its user, if both
// are still good. Everything a session grants passes through here on every
// use: API calls, WebSockets, and the app tokens minted from it. A check
// of the user's standing added here (a suspended account, say) therefore
// holds everywhere at once.
//
// An API token (tokens.go) passes here too, as the session it stands for.
func (s *Server) sessionUser(ctx context.Context, hash string) (store.Session, store.User, error) {
	return s.credentialUser(ctx, hash, false)
}

// credentialUser is sessionUser for a secret that came from the cookie
// (fromCookie), where an API token is refused.
func (s *Server) credentialUser(ctx context.Context, hash string, fromCookie bool) (store.Session, store.User, error) {
	sess, tok, err := s.findSession(ctx, hash)
	if tok != nil {
		if fromCookie {
			return sess, store.User{}, errTokenInCookie
		}
		if !s.now().Before(sess.ExpiresAt) {
			return sess, store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "API token %s expired: create another (`tether tokens create`)", tok.Name)
		}
		u, err := s.activeUser(ctx, sess.UserID)
		if err == nil {
			s.noteTokenUse(ctx, tok)
		}
		return sess, u, err
	}
	if errors.Is(err, store.ErrNotFound) {
		return sess, store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "session token is invalid or was signed out: run `tether login` again")
	}
	if err != nil {
		return sess, store.User{}, err
	}
	if !s.now().Before(sess.ExpiresAt) {
		return sess, store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "session expired: run `tether login` again")
	}
	u, err := s.activeUser(ctx, sess.UserID)
	return sess, u, err
}

// authenticateAgent returns the workspace whose agent token the request
// carries.
func (s *Server) authenticateAgent(r *http.Request) (store.Workspace, error) {
	token := headerToken(r, tether.AgentTokenHeader)
	if token == "" {
		return store.Workspace{}, tether.Errorf(tether.EUNAUTHORIZED, "agent token missing: pass --token (or TETHER_AGENT_TOKEN) as printed by `tether create`")
	}
	ws, err := s.store.WorkspaceByAgentTokenHash(r.Context(), store.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return ws, tether.Errorf(tether.EUNAUTHORIZED, "agent token is invalid: the workspace was deleted or its token replaced")
	}
	return ws, err
}

// startSession creates a session for u and returns its token.
func (s *Server) startSession(r *http.Request, u store.User) (string, error) {
	token := newToken()
	now := s.now()
	err := s.store.CreateSession(r.Context(), store.Session{
		TokenHash: store.HashToken(token),
		UserID:    u.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(sessionLifetime),
	})
	return token, err
}

// setSessionCookie lets browsers carry the token. HttpOnly keeps it from
// scripts, SameSite=Lax from other sites' forms (but not from the same
// site's other hosts, such as subdomain apps: csrf.go is the defence
// there), and leaving Domain out keeps it host-only, away from app hosts.
func (s *Server) setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.sessionCookieName(),
		Value:    token,
		Path:     "/",
		Expires:  expires,
		HttpOnly: true,
		Secure:   s.accessURL.Scheme == "https",
		SameSite: http.SameSiteLaxMode,
	})
}

// clearSessionCookie tells the browser to drop the session cookie.
func (s *Server) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.sessionCookieName(),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   s.accessURL.Scheme == "https",
		SameSite: http.SameSiteLaxMode,
	})
}

// canAccess reports whether u may see and use workspace ws.
func canAccess(u store.User, ws store.Workspace) bool {
	return u.Role == tether.RoleAdmin || ws.OwnerID == u.ID
}

var errAdminOnly = tether.Errorf(tether.EFORBIDDEN, "only admins may do this")
