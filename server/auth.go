package server

import (
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

// bearerToken returns the credential in the named header, in an
// "Authorization: Bearer" header, or (for browsers) in the cookie.
func bearerToken(r *http.Request, header, cookie string) string {
	if t := r.Header.Get(header); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil {
			return c.Value
		}
	}
	return ""
}

var errNoSession = tether.Errorf(tether.EUNAUTHORIZED, "you are not signed in: run `tether login URL`, or send a session token in the %s header", tether.SessionTokenHeader)

// authenticateUser returns the user behind the request's session token.
func (s *Server) authenticateUser(r *http.Request) (store.User, error) {
	token := bearerToken(r, tether.SessionTokenHeader, tether.SessionCookie)
	if token == "" {
		return store.User{}, errNoSession
	}
	sess, err := s.store.SessionByTokenHash(r.Context(), store.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "session token is invalid or was signed out: run `tether login` again")
	}
	if err != nil {
		return store.User{}, err
	}
	if s.now().After(sess.ExpiresAt) {
		return store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "session expired: run `tether login` again")
	}
	return s.sessionUser(r.Context(), sess.UserID)
}

// authenticateAgent returns the workspace whose agent token the request
// carries.
func (s *Server) authenticateAgent(r *http.Request) (store.Workspace, error) {
	token := bearerToken(r, tether.AgentTokenHeader, "")
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
// scripts, and SameSite=Lax from other sites' forms.
func (s *Server) setSessionCookie(w http.ResponseWriter, token string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     tether.SessionCookie,
		Value:    token,
		Path:     "/",
		Expires:  expires,
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
