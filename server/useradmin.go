package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/password"
	"github.com/tetherdev/tether/store"
	"golang.org/x/crypto/bcrypt"
)

// User lifecycle: admins suspend, reactivate, demote, promote and delete
// users, reset their passwords and sign them out; users change their own
// password and sign themselves out everywhere. Every change that takes
// access away also ends the user's open connections (live.go).
//
// The rules, so that no admin locks the deployment or themselves out:
//
//   - there is always an active admin: the last one cannot be demoted,
//     suspended or deleted (the store checks it atomically);
//   - admins cannot suspend or delete themselves (another admin must); they
//     may demote themselves while another active admin remains;
//   - a user who owns workspaces is deleted only when the request says to
//     delete their workspaces too (?delete_workspaces=true);
//   - changing a password ends every other session of the user: the
//     caller's own when they change their own, all of them when an admin
//     resets someone else's.

// activeUser returns the user of a valid session, refusing one who was
// deleted or suspended since it began (sessionUser's last step).
func (s *Server) activeUser(ctx context.Context, id uuid.UUID) (store.User, error) {
	u, err := s.store.UserByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, tether.Errorf(tether.EUNAUTHORIZED, "your account no longer exists: ask an admin")
	} else if err != nil {
		return store.User{}, err
	}
	if u.Status == tether.UserSuspended {
		return store.User{}, errSuspended
	}
	return u, nil
}

var errSuspended = tether.Errorf(tether.EUNAUTHORIZED, "your account is suspended: ask an admin to reactivate it")

// lookupUser finds the user named by the {user} path ("me" is the caller),
// as caller may see it: members see only themselves, and others are "not
// found" so that their existence does not leak.
func (s *Server) lookupUser(r *http.Request, caller store.User) (store.User, error) {
	name := r.PathValue("user")
	if name == "me" || name == caller.Username {
		return caller, nil
	}
	notFound := tether.Errorf(tether.ENOTFOUND, "user %s not found: `tether users list` shows them", name)
	if caller.Role != tether.RoleAdmin {
		return store.User{}, notFound
	}
	u, err := s.store.UserByLogin(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, notFound
	}
	return u, err
}

// userChangeError gives the store's refusals of a change to u their
// messages.
func userChangeError(err error, u store.User) error {
	switch {
	case errors.Is(err, store.ErrLastAdmin):
		return tether.Errorf(tether.ECONFLICT, "%s is the last active admin, and a deployment needs one: make another user admin first (`tether users set-role USER admin`)", u.Username)
	case errors.Is(err, store.ErrNotFound):
		return tether.Errorf(tether.ENOTFOUND, "user %s not found: it was deleted meanwhile", u.Username)
	}
	return err
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, caller store.User) error {
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u.User)
	return nil
}

// writeUser answers with the user as stored now.
func (s *Server) writeUser(w http.ResponseWriter, r *http.Request, id uuid.UUID) error {
	u, err := s.store.UserByID(r.Context(), id)
	if err != nil {
		return storeError(err, "user")
	}
	writeJSON(w, http.StatusOK, u.User)
	return nil
}

func (s *Server) putUserStatus(w http.ResponseWriter, r *http.Request, caller store.User) error {
	if caller.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.UpdateUserStatusRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if !req.Status.Valid() {
		return tether.Errorf(tether.EINVALID, "status %q must be active or suspended", req.Status)
	}
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	if u.ID == caller.ID && req.Status == tether.UserSuspended {
		return tether.Errorf(tether.EFORBIDDEN, "you cannot suspend yourself: you could not undo it. Another admin can")
	}
	err = s.changeAccess(r.Context(), u.ID, "", func() error {
		return s.store.SetUserStatus(r.Context(), u.ID, req.Status)
	})
	if err != nil {
		return userChangeError(err, u)
	}
	s.logger.Info("user status changed", slog.String("user", u.Username), slog.String("status", string(req.Status)), slog.String("by", caller.Username))
	return s.writeUser(w, r, u.ID)
}

func (s *Server) putUserRole(w http.ResponseWriter, r *http.Request, caller store.User) error {
	if caller.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.UpdateUserRoleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if !req.Role.Valid() {
		return tether.Errorf(tether.EINVALID, "role %q must be admin or member", req.Role)
	}
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	// A former admin keeps only what members may reach.
	err = s.changeAccess(r.Context(), u.ID, "", func() error {
		return s.store.SetUserRole(r.Context(), u.ID, req.Role)
	})
	if err != nil {
		return userChangeError(err, u)
	}
	s.logger.Info("user role changed", slog.String("user", u.Username), slog.String("role", string(req.Role)), slog.String("by", caller.Username))
	return s.writeUser(w, r, u.ID)
}

func (s *Server) putUserPassword(w http.ResponseWriter, r *http.Request, caller store.User) error {
	var req tether.UpdateUserPasswordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	self := u.ID == caller.ID
	keep, sessionGone := "", "an admin reset your password: sign in again"
	if self {
		// The current password proves that the person at the keyboard
		// owns the account, not just a session left open.
		if req.OldPassword == "" {
			return tether.Errorf(tether.EINVALID, "to change your own password, give your current one too (old_password)")
		}
		if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(req.OldPassword)) != nil {
			return tether.Errorf(tether.EFORBIDDEN, "your current password is not correct")
		}
		keep = s.requestSessionHash(r)
		sessionGone = "your password was changed: sign in again"
	} else if req.OldPassword != "" {
		return tether.Errorf(tether.EINVALID, "old_password is for changing your own password; an admin resets another user's without it")
	}
	if err := password.Check(req.Password, u.Username, u.Email); err != nil {
		return err
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		return err
	}
	err = s.changeAccess(r.Context(), u.ID, sessionGone, func() error {
		return s.store.SetUserPassword(r.Context(), u.ID, hash, keep)
	})
	if err != nil {
		return userChangeError(err, u)
	}
	s.logger.Info("password changed", slog.String("user", u.Username), slog.String("by", caller.Username))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteUserSessions(w http.ResponseWriter, r *http.Request, caller store.User) error {
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	sessionGone := "an admin signed you out everywhere: sign in again"
	if u.ID == caller.ID {
		sessionGone = "you signed out everywhere"
	}
	var n int
	err = s.changeAccess(r.Context(), u.ID, sessionGone, func() (err error) {
		n, err = s.store.DeleteUserSessions(r.Context(), u.ID, "")
		return err
	})
	if err != nil {
		return err
	}
	if u.ID == caller.ID {
		s.clearSessionCookie(w)
	}
	s.logger.Info("signed out everywhere", slog.String("user", u.Username), slog.Int("sessions", n), slog.String("by", caller.Username))
	writeJSON(w, http.StatusOK, tether.EndSessionsResponse{Ended: n})
	return nil
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, caller store.User) error {
	if caller.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	withWorkspaces := false
	if v := r.URL.Query().Get("delete_workspaces"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return tether.Errorf(tether.EINVALID, "delete_workspaces must be true or false, not %q", v)
		}
		withWorkspaces = b
	}
	u, err := s.lookupUser(r, caller)
	if err != nil {
		return err
	}
	if u.ID == caller.ID {
		return tether.Errorf(tether.EFORBIDDEN, "you cannot delete yourself: another admin can")
	}
	var deleted []store.Workspace
	err = s.changeAccess(r.Context(), u.ID, "", func() (err error) {
		deleted, err = s.store.DeleteUser(r.Context(), u.ID, withWorkspaces)
		return err
	})
	if errors.Is(err, store.ErrHasWorkspaces) {
		return tether.Errorf(tether.ECONFLICT, "%s owns %s: delete them first, or delete them with the user (`tether users delete %s` asks; the API takes ?delete_workspaces=true)",
			u.Username, describeWorkspaces(deleted), u.Username)
	}
	if err != nil {
		return userChangeError(err, u)
	}
	names := make([]string, 0, len(deleted))
	for _, ws := range deleted {
		s.forgetWorkspace(ws.ID)
		names = append(names, ws.Name)
	}
	s.logger.Info("user deleted", slog.String("user", u.Username), slog.Int("workspaces", len(deleted)), slog.String("by", caller.Username))
	writeJSON(w, http.StatusOK, tether.DeleteUserResponse{DeletedWorkspaces: names})
	return nil
}

// describeWorkspaces names a few workspaces: "3 workspaces (a, b, c)".
func describeWorkspaces(ws []store.Workspace) string {
	const show = 5
	names := make([]string, 0, show)
	for i, w := range ws {
		if i == show {
			names = append(names, "…")
			break
		}
		names = append(names, w.Name)
	}
	noun := "workspaces"
	if len(ws) == 1 {
		noun = "workspace"
	}
	return fmt.Sprintf("%d %s (%s)", len(ws), noun, strings.Join(names, ", "))
}
