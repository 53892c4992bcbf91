package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// The rules that keep a deployment administrable and a user's own account
// theirs.
func TestUserLifecycleRules(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	ts.addUser(alice, "carol", tether.RoleMember)

	type step struct {
		name         string
		token        string
		method, path string
		body         any
		status       int
		says         string // in the error message
	}
	steps := []step{
		// Members manage nobody, and others do not exist for them.
		{"member suspends", bob, "PUT", "/api/v2/users/carol/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, 403, "only admins"},
		{"member promotes self", bob, "PUT", "/api/v2/users/me/role", tether.UpdateUserRoleRequest{Role: tether.RoleAdmin}, 403, "only admins"},
		{"member deletes", bob, "DELETE", "/api/v2/users/carol", nil, 403, "only admins"},
		{"member reads another", bob, "GET", "/api/v2/users/carol", nil, 404, "not found"},
		{"member resets another's password", bob, "PUT", "/api/v2/users/carol/password", tether.UpdateUserPasswordRequest{Password: "a-new-secret-pw"}, 404, "not found"},
		{"member signs another out", bob, "DELETE", "/api/v2/users/carol/sessions", nil, 404, "not found"},
		// Admins cannot lock the deployment, or themselves, out.
		{"admin suspends self", alice, "PUT", "/api/v2/users/me/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, 403, "cannot suspend yourself"},
		{"admin deletes self", alice, "DELETE", "/api/v2/users/alice", nil, 403, "cannot delete yourself"},
		{"last admin demotes self", alice, "PUT", "/api/v2/users/me/role", tether.UpdateUserRoleRequest{Role: tether.RoleMember}, 409, "last active admin"},
		// Bad requests say what is wrong.
		{"bad status", alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: "gone"}, 400, "active or suspended"},
		{"bad role", alice, "PUT", "/api/v2/users/bob/role", tether.UpdateUserRoleRequest{Role: "root"}, 400, "admin or member"},
		{"unknown user", alice, "PUT", "/api/v2/users/nobody/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, 404, "not found"},
		{"bad delete flag", alice, "DELETE", "/api/v2/users/bob?delete_workspaces=maybe", nil, 400, "true or false"},
		// Own password: with the current one, and a good new one.
		{"own password without the old", bob, "PUT", "/api/v2/users/me/password", tether.UpdateUserPasswordRequest{Password: "a-new-secret-pw"}, 400, "current one"},
		{"own password, wrong old", bob, "PUT", "/api/v2/users/me/password", tether.UpdateUserPasswordRequest{OldPassword: "guess-guess", Password: "a-new-secret-pw"}, 403, "not correct"},
		{"own password, common new", bob, "PUT", "/api/v2/users/me/password", tether.UpdateUserPasswordRequest{OldPassword: "bob-secret-pw", Password: "Password1!"}, 400, "most common"},
		{"admin reset with an old password", alice, "PUT", "/api/v2/users/bob/password", tether.UpdateUserPasswordRequest{OldPassword: "x", Password: "a-new-secret-pw"}, 400, "own password"},
		// New users: reserved names and weak passwords are refused.
		{"reserved name", alice, "POST", "/api/v2/users", tether.CreateUserRequest{Username: "me", Email: "me@example.com", Password: "a-good-secret"}, 400, "reserved"},
		{"common password", alice, "POST", "/api/v2/users", tether.CreateUserRequest{Username: "dave", Email: "dave@example.com", Password: "12345678"}, 400, "most common"},
		{"password is the username", alice, "POST", "/api/v2/users", tether.CreateUserRequest{Username: "dave-smith", Email: "dave@example.com", Password: "dave-smith"}, 400, "too close"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, _, body := ts.call(s.token, s.method, s.path, s.body, nil)
			wantError(t, code, body, s.status, s.says)
		})
	}

	// Nothing above changed anyone.
	var users []tether.User
	ts.must(200, alice, "GET", "/api/v2/users", nil, &users)
	for _, u := range users {
		if u.Status != tether.UserActive || (u.Username == "alice") != (u.Role == tether.RoleAdmin) {
			t.Errorf("after refused changes: %+v", u)
		}
	}
	if len(users) != 3 {
		t.Errorf("%d users, want 3", len(users))
	}
}

func TestSuspendAndReactivate(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	bob2 := ts.login("bob", "bob-secret-pw")

	var u tether.User
	ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, &u)
	if u.Status != tether.UserSuspended {
		t.Errorf("answer after suspending: %+v", u)
	}
	for _, tok := range []string{bob, bob2} {
		code, _, body := ts.call(tok, "GET", "/api/v2/users/me", nil, nil)
		wantError(t, code, body, 401, "")
	}
	code, _, body := ts.call("", "POST", "/api/v2/users/login", tether.LoginRequest{Login: "bob", Password: "bob-secret-pw"}, nil)
	wantError(t, code, body, 403, "suspended")
	var users []tether.User
	ts.must(200, alice, "GET", "/api/v2/users", nil, &users)
	if users[1].Username != "bob" || users[1].Status != tether.UserSuspended {
		t.Errorf("users list: %+v", users)
	}

	ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserActive}, &u)
	bob = ts.login("bob", "bob-secret-pw")
	ts.must(200, bob, "GET", "/api/v2/users/me", nil, &u)
	if u.Status != tether.UserActive {
		t.Errorf("after reactivating: %+v", u)
	}
}

// A user whose row is gone while a session remains (the database edited by
// hand, or a race with a deletion) is signed out, not an internal error.
func TestDeletedUsersSession(t *testing.T) {
	var gone uuid.UUID
	ts := newTestServer(t, Options{}, func(s store.Store) store.Store { return &vanishingUsers{Store: s, gone: &gone} })
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	var me tether.User
	ts.must(200, bob, "GET", "/api/v2/users/me", nil, &me)
	gone = me.ID
	code, _, body := ts.call(bob, "GET", "/api/v2/workspaces", nil, nil)
	wantError(t, code, body, 401, "no longer exists")
}

// vanishingUsers is a store in which one user cannot be found.
type vanishingUsers struct {
	store.Store
	gone *uuid.UUID
}

func (v *vanishingUsers) UserByID(ctx context.Context, id uuid.UUID) (store.User, error) {
	if id == *v.gone {
		return store.User{}, store.ErrNotFound
	}
	return v.Store.UserByID(ctx, id)
}

func TestPasswordChanges(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	bobLaptop := ts.login("bob", "bob-secret-pw")

	// Bob changes his own: this session stays, the others end.
	ts.must(204, bob, "PUT", "/api/v2/users/me/password", tether.UpdateUserPasswordRequest{OldPassword: "bob-secret-pw", Password: "a-fresh-passphrase"}, nil)
	ts.must(200, bob, "GET", "/api/v2/users/me", nil, nil)
	code, _, body := ts.call(bobLaptop, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, body, 401, "")
	code, _, body = ts.call("", "POST", "/api/v2/users/login", tether.LoginRequest{Login: "bob", Password: "bob-secret-pw"}, nil)
	wantError(t, code, body, 401, "")
	bobLaptop = ts.login("bob", "a-fresh-passphrase")

	// An admin resets it: every session of bob ends.
	ts.must(204, alice, "PUT", "/api/v2/users/bob/password", tether.UpdateUserPasswordRequest{Password: "reset-by-alice"}, nil)
	for _, tok := range []string{bob, bobLaptop} {
		code, _, body := ts.call(tok, "GET", "/api/v2/users/me", nil, nil)
		wantError(t, code, body, 401, "")
	}
	ts.login("bob", "reset-by-alice")
	ts.must(200, alice, "GET", "/api/v2/users/me", nil, nil)
}

func TestEndSessions(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	bob2 := ts.login("bob", "bob-secret-pw")
	var resp tether.EndSessionsResponse
	_, h, _ := ts.call(bob, "DELETE", "/api/v2/users/me/sessions", nil, &resp)
	if resp.Ended != 2 {
		t.Errorf("ended %d sessions, want 2", resp.Ended)
	}
	if c := h.Get("Set-Cookie"); !strings.Contains(c, tether.SessionCookie+"=;") {
		t.Errorf("Set-Cookie = %q, want the session cookie cleared", c)
	}
	for _, tok := range []string{bob, bob2} {
		code, _, body := ts.call(tok, "GET", "/api/v2/users/me", nil, nil)
		wantError(t, code, body, 401, "")
	}
	// An admin signs another user out.
	bob = ts.login("bob", "bob-secret-pw")
	ts.must(200, alice, "DELETE", "/api/v2/users/bob/sessions", nil, &resp)
	code, _, body := ts.call(bob, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, body, 401, "")
	ts.must(200, alice, "GET", "/api/v2/users/me", nil, nil)
}

func TestDeleteUser(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	for _, name := range []string{"one", "two"} {
		ts.must(201, bob, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: name}, nil)
	}
	code, _, body := ts.call(alice, "DELETE", "/api/v2/users/bob", nil, nil)
	wantError(t, code, body, 409, "bob owns 2 workspaces (one, two)")
	ts.must(200, bob, "GET", "/api/v2/users/me", nil, nil)

	var resp tether.DeleteUserResponse
	ts.must(200, alice, "DELETE", "/api/v2/users/bob?delete_workspaces=true", nil, &resp)
	if strings.Join(resp.DeletedWorkspaces, ",") != "one,two" {
		t.Errorf("deleted workspaces: %v", resp.DeletedWorkspaces)
	}
	code, _, body = ts.call(bob, "GET", "/api/v2/users/me", nil, nil)
	wantError(t, code, body, 401, "")
	var ws []tether.Workspace
	ts.must(200, alice, "GET", "/api/v2/workspaces", nil, &ws)
	if len(ws) != 0 {
		t.Errorf("workspaces left: %+v", ws)
	}
	code, _, body = ts.call(alice, "DELETE", "/api/v2/users/bob", nil, nil)
	wantError(t, code, body, 404, "not found")
	// The name is free again.
	ts.addUser(alice, "bob", tether.RoleMember)
}

// Two admins: one may demote the other, and then the last may not go.
func TestDemoteAdmin(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleAdmin)
	var u tether.User
	ts.must(200, bob, "PUT", "/api/v2/users/alice/role", tether.UpdateUserRoleRequest{Role: tether.RoleMember}, &u)
	if u.Role != tether.RoleMember {
		t.Errorf("after demotion: %+v", u)
	}
	code, _, body := ts.call(alice, "GET", "/api/v2/users", nil, nil)
	wantError(t, code, body, 403, "only admins")
	code, _, body = ts.call(bob, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, nil)
	wantError(t, code, body, 403, "cannot suspend yourself")
	code, _, body = ts.call(bob, "PUT", "/api/v2/users/me/role", tether.UpdateUserRoleRequest{Role: tether.RoleMember}, nil)
	wantError(t, code, body, 409, "last active admin")
}

func TestPages(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	for _, name := range []string{"e", "d", "c", "b", "a"} {
		ts.must(201, bob, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: name}, nil)
	}
	ts.must(201, alice, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "z"}, nil)

	// list follows the Link headers and returns the names and the number
	// of requests it took.
	list := func(token, path string) ([]string, int) {
		var names []string
		requests := 0
		for path != "" {
			var page []tether.Workspace
			code, h, body := ts.call(token, "GET", path, nil, &page)
			if code != 200 {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			requests++
			for _, w := range page {
				names = append(names, w.Owner+"/"+w.Name)
			}
			path = ""
			if link := h.Get("Link"); link != "" {
				ref, _, _ := strings.Cut(link, ">")
				path = "/api/v2/workspaces" + strings.TrimPrefix(ref, "<")
			}
		}
		return names, requests
	}
	names, n := list(alice, "/api/v2/workspaces?limit=2")
	if got := strings.Join(names, " "); got != "alice/z bob/a bob/b bob/c bob/d bob/e" || n != 3 {
		t.Errorf("admin, pages of 2: %s in %d requests", got, n)
	}
	names, n = list(bob, "/api/v2/workspaces?limit=3")
	if got := strings.Join(names, " "); got != "bob/a bob/b bob/c bob/d bob/e" || n != 2 {
		t.Errorf("member, pages of 3: %s in %d requests", got, n)
	}
	names, n = list(alice, "/api/v2/workspaces?owner=me&limit=1")
	if got := strings.Join(names, " "); got != "alice/z" || n != 1 {
		t.Errorf("admin's own, pages of 1: %s in %d requests", got, n)
	}
	names, _ = list(alice, "/api/v2/workspaces")
	if len(names) != 6 {
		t.Errorf("default page: %v", names)
	}

	var users []tether.User
	_, h, _ := ts.call(alice, "GET", "/api/v2/users?limit=1", nil, &users)
	if len(users) != 1 || users[0].Username != "alice" || !strings.Contains(h.Get("Link"), "after=alice") {
		t.Errorf("users, page of 1: %+v, Link %q", users, h.Get("Link"))
	}
	ts.call(alice, "GET", "/api/v2/users?limit=1&after=alice", nil, &users)
	if len(users) != 1 || users[0].Username != "bob" {
		t.Errorf("users after alice: %+v", users)
	}

	for _, bad := range []string{"limit=0", "limit=-1", "limit=x", "limit=1001", "after=nocursor"} {
		code, _, body := ts.call(alice, "GET", "/api/v2/workspaces?"+bad, nil, nil)
		wantError(t, code, body, 400, "")
	}
}

func TestWorkspaceLimit(t *testing.T) {
	ts := newTestServer(t, Options{MaxWorkspacesPerUser: 2}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	for _, tok := range []string{alice, bob} {
		for _, name := range []string{"one", "two"} {
			ts.must(201, tok, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: name}, nil)
		}
		code, _, body := ts.call(tok, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "three"}, nil)
		wantError(t, code, body, 403, "the most this server allows")
	}
	ts.must(204, bob, "DELETE", "/api/v2/workspaces/me/one", nil, nil)
	ts.must(201, bob, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "three"}, nil)
}

// A full database is a clear 507 for the client and an error in the log.
func TestStorageFull(t *testing.T) {
	ts := newTestServer(t, Options{}, func(s store.Store) store.Store { return fullStore{s} })
	alice := ts.firstAdmin("alice")
	code, _, body := ts.call(alice, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "dev"}, nil)
	wantError(t, code, body, http.StatusInsufficientStorage, "out of space, so nothing was saved")
	if logs := ts.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "database is full") {
		t.Errorf("log has no error about the full database:\n%s", logs)
	}
}

// fullStore is a store whose disk is full for new workspaces.
type fullStore struct{ store.Store }

func (fullStore) CreateWorkspace(context.Context, store.Workspace, int) error {
	return errors.Join(errors.New("create workspace: database or disk is full (13)"), store.ErrStorageFull)
}
