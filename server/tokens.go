package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// API tokens are credentials for scripts and CI. A token is a session token
// with a name: it goes in the same header (or as a bearer), passes the same
// check (sessionUser, so a suspended user's tokens stop working at once),
// and connections opened with it are tracked like a session's (live.go), so
// deleting it ends them. It differs in three ways:
//
//   - it is never accepted from the dashboard's cookie: a token belongs in
//     a script's header, and a cookie of it could be planted by a host of
//     the same site or ride on requests other pages make;
//   - it outlives what ends sessions (signing out everywhere, a password
//     change, suspension): it ends when deleted, when it expires, and with
//     its user;
//   - it cannot create tokens: otherwise a leaked token could outlive its
//     expiry by minting its successor.
//
// Its lifetime is chosen at creation, up to --max-token-lifetime.

const (
	// DefaultTokenLifetime is a new token's lifetime when its creator
	// gives none (shortened to the maximum if that is shorter).
	DefaultTokenLifetime = 30 * 24 * time.Hour
	// DefaultMaxTokenLifetime is the longest lifetime a token may have
	// unless the server says otherwise (--max-token-lifetime).
	DefaultMaxTokenLifetime = 365 * 24 * time.Hour
	// minTokenLifetime refuses lifetimes that are surely a unit mistake.
	minTokenLifetime = time.Minute
	// tokenUseResolution is how stale a token's "last used" may get: a
	// token used all the time costs a write a minute, not one a request.
	tokenUseResolution = time.Minute
)

// newAPIToken returns a fresh API token: a session-strength secret with
// tether.APITokenPrefix in front.
func newAPIToken() string { return tether.APITokenPrefix + newToken() }

// isAPIToken reports whether a bearer secret has the form of an API token.
// Only the store says whether it is one.
func isAPIToken(token string) bool { return strings.HasPrefix(token, tether.APITokenPrefix) }

var errTokenInCookie = tether.Errorf(tether.EUNAUTHORIZED,
	"API tokens work only in the %s header or as Authorization: Bearer, never in a cookie", tether.SessionTokenHeader)

// findSession returns the session, or the API token, stored under hash, as
// a session; token is nil for a session. It wraps store.ErrNotFound when
// there is neither.
func (s *Server) findSession(ctx context.Context, hash string) (store.Session, *store.APIToken, error) {
	sess, err := s.store.SessionByTokenHash(ctx, hash)
	if !errors.Is(err, store.ErrNotFound) {
		return sess, nil, err
	}
	t, err := s.store.APITokenByHash(ctx, hash)
	if err != nil {
		return store.Session{TokenHash: hash}, nil, err
	}
	return store.Session{TokenHash: hash, UserID: t.UserID, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}, &t, nil
}

// noteTokenUse records that t authenticated a request now, at most once a
// tokenUseResolution. A failure to record it does not fail the request.
func (s *Server) noteTokenUse(ctx context.Context, t *store.APIToken) {
	now := s.now()
	if now.Sub(t.LastUsedAt) < tokenUseResolution {
		return
	}
	if err := s.store.APITokenUsed(ctx, t.ID, now); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.logger.Warn("record API token use", slog.String("token", t.Name), slog.Any("err", err))
	}
}

// requestUsesAPIToken reports whether the request authenticated with an API
// token (for a request that authenticated already).
func (s *Server) requestUsesAPIToken(r *http.Request) bool {
	token, _, err := s.sessionToken(r)
	return err == nil && isAPIToken(token)
}

// apiTokenView is the listing of t: everything but its secret.
func apiTokenView(t store.APIToken) tether.APIToken {
	v := tether.APIToken{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
	if !t.LastUsedAt.IsZero() {
		used := t.LastUsedAt
		v.LastUsedAt = &used
	}
	return v
}

// tokenLifetime is the lifetime a creation request asks for, checked
// against the server's maximum.
func (s *Server) tokenLifetime(asked tether.Duration) (time.Duration, error) {
	d := time.Duration(asked)
	switch {
	case d == 0:
		return min(DefaultTokenLifetime, s.maxTokenLifetime), nil
	case d < minTokenLifetime:
		return 0, tether.Errorf(tether.EINVALID, "a token's lifetime must be at least %s, not %s", minTokenLifetime, d)
	case d > s.maxTokenLifetime:
		return 0, tether.Errorf(tether.EINVALID, "a token's lifetime may be at most %s on this server (its --max-token-lifetime), not %s", formatLifetime(s.maxTokenLifetime), formatLifetime(d))
	}
	return d, nil
}

// formatLifetime writes whole days as days, which is how people think of
// token lifetimes, and anything else as Go does.
func formatLifetime(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

func (s *Server) getAPITokens(w http.ResponseWriter, r *http.Request, caller store.User) error {
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	ts, err := s.store.ListAPITokens(r.Context(), u.ID)
	if err != nil {
		return err
	}
	out := make([]tether.APIToken, 0, len(ts))
	for _, t := range ts {
		out = append(out, apiTokenView(t))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postAPIToken(w http.ResponseWriter, r *http.Request, caller store.User) error {
	var req tether.CreateAPITokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	if u.ID != caller.ID {
		return tether.Errorf(tether.EFORBIDDEN, "API tokens are created by their owner only: a token of %s would act as %s", u.Username, u.Username)
	}
	if s.requestUsesAPIToken(r) {
		return tether.Errorf(tether.EFORBIDDEN, "an API token cannot create tokens: sign in (`tether login`, or the dashboard) to create one")
	}
	lifetime, err := s.tokenLifetime(req.Lifetime)
	if err != nil {
		return err
	}
	name := req.Name
	if name == "" {
		b := make([]byte, 4)
		rand.Read(b)
		name = "token-" + hex.EncodeToString(b)
	} else if err := tether.ValidateName("token", name); err != nil {
		return err
	}
	secret := newAPIToken()
	now := s.now()
	t := store.APIToken{
		ID:        uuid.New(),
		Name:      name,
		TokenHash: store.HashToken(secret),
		UserID:    u.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(lifetime),
	}
	if err := s.store.CreateAPIToken(r.Context(), t); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return tether.Errorf(tether.ECONFLICT, "you have a token named %s already: choose another name, or delete that one first", name)
		}
		return err
	}
	s.logger.Info("API token created", slog.String("user", u.Username), slog.String("token", name), slog.Time("expires", t.ExpiresAt))
	writeJSON(w, http.StatusCreated, tether.CreateAPITokenResponse{APIToken: apiTokenView(t), Token: secret})
	return nil
}

func (s *Server) deleteAPIToken(w http.ResponseWriter, r *http.Request, caller store.User) error {
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	ref := r.PathValue("token")
	notFound := tether.Errorf(tether.ENOTFOUND, "%s has no token %s: `tether tokens ls` lists them", u.Username, ref)
	id, err := uuid.Parse(ref)
	if err != nil {
		ts, err := s.store.ListAPITokens(r.Context(), u.ID)
		if err != nil {
			return err
		}
		found := false
		for _, t := range ts {
			if t.Name == ref {
				id, found = t.ID, true
			}
		}
		if !found {
			return notFound
		}
	}
	var gone store.APIToken
	err = s.changeAccess(r.Context(), u.ID, "the API token it was opened with was deleted", func() (err error) {
		gone, err = s.store.DeleteAPIToken(r.Context(), u.ID, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	s.logger.Info("API token deleted", slog.String("user", u.Username), slog.String("token", gone.Name), slog.String("by", caller.Username))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// endAPIToken deletes u's API token stored under hash, if it is still
// there, and ends the connections opened with it.
func (s *Server) endAPIToken(ctx context.Context, u store.User, hash string) error {
	t, err := s.store.APITokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = s.changeAccess(ctx, u.ID, "the API token it was opened with was signed out", func() error {
		_, err := s.store.DeleteAPIToken(ctx, u.ID, t.ID)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.logger.Info("API token signed out", slog.String("user", u.Username), slog.String("token", t.Name))
	return nil
}
