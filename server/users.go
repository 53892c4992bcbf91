package server

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/password"
	"github.com/tetherdev/tether/store"
	"golang.org/x/crypto/bcrypt"
)

func (s *Server) getFirstUser(w http.ResponseWriter, r *http.Request) error {
	n, err := s.store.CountUsers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tether.FirstUserResponse{Exists: n > 0})
	return nil
}

// newUser validates a request to create a user and hashes its password.
func (s *Server) newUser(username, email, pw string, role tether.Role) (store.User, error) {
	if err := tether.ValidateUsername(username); err != nil {
		return store.User{}, err
	}
	email = strings.TrimSpace(email)
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return store.User{}, tether.Errorf(tether.EINVALID, "%q is not an email address", email)
	}
	if !role.Valid() {
		return store.User{}, tether.Errorf(tether.EINVALID, "role %q must be admin or member", role)
	}
	if err := password.Check(pw, username, email); err != nil {
		return store.User{}, err
	}
	hash, err := hashPassword(pw)
	if err != nil {
		return store.User{}, err
	}
	return store.User{
		User:         tether.User{ID: uuid.New(), Username: username, Email: email, Role: role, Status: tether.UserActive, CreatedAt: s.now()},
		PasswordHash: hash,
	}, nil
}

func (s *Server) postFirstUser(w http.ResponseWriter, r *http.Request) error {
	var req tether.CreateFirstUserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	errExists := tether.Errorf(tether.ECONFLICT, "the first user already exists: sign in with `tether login URL` instead")
	// On a server that is set up, that is the answer, whatever the
	// request's flaws (CreateFirstUser decides atomically below).
	if n, err := s.store.CountUsers(r.Context()); err != nil {
		return err
	} else if n > 0 {
		return errExists
	}
	u, err := s.newUser(req.Username, req.Email, req.Password, tether.RoleAdmin)
	if err != nil {
		return err
	}
	if err := s.store.CreateFirstUser(r.Context(), u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errExists
		}
		return err
	}
	return s.respondWithSession(w, r, u, http.StatusCreated)
}

func (s *Server) respondWithSession(w http.ResponseWriter, r *http.Request, u store.User, status int) error {
	if u.Status == tether.UserSuspended {
		return tether.Errorf(tether.EFORBIDDEN, "your account is suspended: ask an admin to reactivate it")
	}
	token, err := s.startSession(r, u)
	if err != nil {
		return err
	}
	s.setSessionCookie(w, token, s.now().Add(sessionLifetime))
	writeJSON(w, status, tether.LoginResponse{SessionToken: token, User: u.User})
	return nil
}

var errBadLogin = tether.Errorf(tether.EUNAUTHORIZED, "incorrect username, email or password")

// maxLoggedLogin bounds what a failed sign-in's log line repeats of the
// name typed.
const maxLoggedLogin = 64

func (s *Server) postLogin(w http.ResponseWriter, r *http.Request) error {
	var req tether.LoginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Login == "" || req.Password == "" {
		return tether.Errorf(tether.EINVALID, "login and password are required")
	}
	login := strings.TrimSpace(req.Login)
	account, addr := accountKey(login), clientAddress(r, s.trustedProxies)
	source := sourceKey(addr)
	logged := login
	if len(logged) > maxLoggedLogin {
		logged = logged[:maxLoggedLogin] + "…"
	}
	log := s.logger.With(slog.String("login", logged), slog.String("source", addr.String()))
	now := s.now()
	if wait := s.logins.check(account, source, now); wait > 0 {
		log.Warn("sign-in refused: too many failures", slog.Duration("retry_after", wait))
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		return tether.Errorf(tether.ETOOMANY,
			"too many failed sign-ins for this account or from your address: wait %s and try again", retryAfter(wait))
	}
	u, err := s.store.UserByLogin(r.Context(), login)
	if errors.Is(err, store.ErrNotFound) {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(req.Password))
		s.logins.failed(account, source, now)
		log.Warn("sign-in failed: no such user")
		return errBadLogin
	}
	if err != nil {
		return err
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(req.Password)) != nil {
		s.logins.failed(account, source, now)
		log.Warn("sign-in failed: wrong password")
		return errBadLogin
	}
	s.logins.succeeded(account, source, now)
	return s.respondWithSession(w, r, u, http.StatusOK)
}

func (s *Server) postLogout(w http.ResponseWriter, r *http.Request, u store.User) error {
	token, _, err := s.sessionToken(r)
	if err != nil {
		return err
	}
	hash := store.HashToken(token)
	if isAPIToken(token) {
		// Signing out with an API token ends that token, as it would a
		// session: nothing else could sign it out.
		if err := s.endAPIToken(r.Context(), u, hash); err != nil {
			return err
		}
	} else if err := s.store.DeleteSession(r.Context(), hash); err != nil {
		return err
	}
	s.appTokens.revokeSession(hash)
	s.clearSessionCookie(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request, u store.User) error {
	writeJSON(w, http.StatusOK, u.User)
	return nil
}

func (s *Server) getUsers(w http.ResponseWriter, r *http.Request, u store.User) error {
	if u.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	p, err := readPage(r)
	if err != nil {
		return err
	}
	users, err := s.store.ListUsers(r.Context(), p)
	if err != nil {
		return err
	}
	users = pageEnd(w, r, p, users, func(u store.User) string { return u.Username })
	out := make([]tether.User, 0, len(users))
	for _, u := range users {
		out = append(out, u.User)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) postUser(w http.ResponseWriter, r *http.Request, admin store.User) error {
	if admin.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.CreateUserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = tether.RoleMember
	}
	u, err := s.newUser(req.Username, req.Email, req.Password, req.Role)
	if err != nil {
		return err
	}
	if err := s.store.CreateUser(r.Context(), u); err != nil {
		return storeError(err, "a user with that username or email")
	}
	writeJSON(w, http.StatusCreated, u.User)
	return nil
}
