package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// runUserLifecycle checks suspending, demoting, deleting and re-keying
// users, and the rule that keeps one active admin.
func runUserLifecycle(t *testing.T, ctx context.Context, open func(t *testing.T) store.Store, now time.Time, newUser func(string, tether.Role) store.User) {
	createUsers := func(t *testing.T, s store.Store, users ...store.User) {
		t.Helper()
		for _, u := range users {
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
	}
	session := func(t *testing.T, s store.Store, u store.User, name string) string {
		t.Helper()
		h := store.HashToken(name)
		if err := s.CreateSession(ctx, store.Session{TokenHash: h, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return h
	}
	sessionExists := func(t *testing.T, s store.Store, h string) bool {
		t.Helper()
		_, err := s.SessionByTokenHash(ctx, h)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	user := func(t *testing.T, s store.Store, id uuid.UUID) store.User {
		t.Helper()
		u, err := s.UserByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	t.Run("SuspendEndsSessions", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		createUsers(t, s, alice, bob)
		b1, b2, a1 := session(t, s, bob, "b1"), session(t, s, bob, "b2"), session(t, s, alice, "a1")
		if err := s.SetUserStatus(ctx, bob.ID, tether.UserSuspended); err != nil {
			t.Fatal(err)
		}
		if got := user(t, s, bob.ID); got.Status != tether.UserSuspended {
			t.Fatalf("status after suspending: %q", got.Status)
		}
		if sessionExists(t, s, b1) || sessionExists(t, s, b2) {
			t.Fatal("a suspended user's sessions are still there")
		}
		if !sessionExists(t, s, a1) {
			t.Fatal("suspending bob ended alice's session")
		}
		if err := s.SetUserStatus(ctx, bob.ID, tether.UserActive); err != nil {
			t.Fatal(err)
		}
		if got := user(t, s, bob.ID); got.Status != tether.UserActive {
			t.Fatalf("status after reactivating: %q", got.Status)
		}
		if err := s.SetUserStatus(ctx, uuid.New(), tether.UserSuspended); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("suspending an unknown user: got %v, want ErrNotFound", err)
		}
		if err := s.SetUserRole(ctx, uuid.New(), tether.RoleMember); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("demoting an unknown user: got %v, want ErrNotFound", err)
		}
	})

	t.Run("LastActiveAdmin", func(t *testing.T) {
		s := open(t)
		alice, bob, carol := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember), newUser("carol", tether.RoleMember)
		createUsers(t, s, alice, bob, carol)
		a1 := session(t, s, alice, "a1")
		if err := s.SetUserRole(ctx, alice.ID, tether.RoleMember); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("demoting the only admin: got %v, want ErrLastAdmin", err)
		}
		if err := s.SetUserStatus(ctx, alice.ID, tether.UserSuspended); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("suspending the only admin: got %v, want ErrLastAdmin", err)
		}
		if !sessionExists(t, s, a1) {
			t.Fatal("a refused suspension ended the admin's session")
		}
		if _, err := s.DeleteUser(ctx, alice.ID, true); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("deleting the only admin: got %v, want ErrLastAdmin", err)
		}
		if got := user(t, s, alice.ID); got.Role != tether.RoleAdmin || got.Status != tether.UserActive {
			t.Fatalf("the only admin changed anyway: %+v", got.User)
		}
		// A suspended admin does not count: they cannot act.
		if err := s.SetUserRole(ctx, carol.ID, tether.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUserStatus(ctx, carol.ID, tether.UserSuspended); err != nil {
			t.Fatalf("suspending one of two admins: %v", err)
		}
		if err := s.SetUserRole(ctx, alice.ID, tether.RoleMember); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("demoting the only active admin (the other is suspended): got %v, want ErrLastAdmin", err)
		}
		if err := s.SetUserRole(ctx, carol.ID, tether.RoleMember); err != nil {
			t.Fatalf("demoting a suspended admin: %v", err)
		}
		if err := s.SetUserRole(ctx, bob.ID, tether.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUserRole(ctx, alice.ID, tether.RoleMember); err != nil {
			t.Fatalf("demoting one of two active admins: %v", err)
		}
		if got := user(t, s, alice.ID); got.Role != tether.RoleMember {
			t.Fatalf("alice's role after demotion: %q", got.Role)
		}
		if err := s.SetUserRole(ctx, bob.ID, tether.RoleMember); !errors.Is(err, store.ErrLastAdmin) {
			t.Fatalf("demoting the new only admin: got %v, want ErrLastAdmin", err)
		}
	})

	// Two admins demoting, suspending or deleting each other at the same
	// time must leave one of them.
	t.Run("LastActiveAdminConcurrently", func(t *testing.T) {
		changes := []struct {
			name string
			do   func(s store.Store, id uuid.UUID) error
		}{
			{"demote", func(s store.Store, id uuid.UUID) error { return s.SetUserRole(ctx, id, tether.RoleMember) }},
			{"suspend", func(s store.Store, id uuid.UUID) error { return s.SetUserStatus(ctx, id, tether.UserSuspended) }},
			{"delete", func(s store.Store, id uuid.UUID) error { _, err := s.DeleteUser(ctx, id, true); return err }},
		}
		for _, ca := range changes {
			for _, cb := range changes {
				s := open(t)
				a, b := newUser("a", tether.RoleAdmin), newUser("b", tether.RoleAdmin)
				createUsers(t, s, a, b)
				errs := make([]error, 2)
				concurrently(ctx, s, 2, func(i int) {
					if i == 0 {
						errs[0] = ca.do(s, b.ID)
					} else {
						errs[1] = cb.do(s, a.ID)
					}
				})
				for _, err := range errs {
					if err != nil && !errors.Is(err, store.ErrLastAdmin) {
						t.Fatalf("a %ss b while b %ss a: %v", ca.name, cb.name, err)
					}
				}
				if n := countActiveAdmins(t, ctx, s); n != 1 {
					t.Fatalf("a %ss b while b %ss a: %d active admins left, want 1 (errors: %v)", ca.name, cb.name, n, errs)
				}
			}
		}
	})

	t.Run("PasswordEndsOtherSessions", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		createUsers(t, s, alice, bob)
		keep, other, bobs := session(t, s, alice, "keep"), session(t, s, alice, "other"), session(t, s, bob, "bobs")
		if err := s.SetUserPassword(ctx, alice.ID, []byte("new-hash"), keep); err != nil {
			t.Fatal(err)
		}
		if got := user(t, s, alice.ID); string(got.PasswordHash) != "new-hash" {
			t.Fatalf("hash after change: %q", got.PasswordHash)
		}
		if !sessionExists(t, s, keep) || sessionExists(t, s, other) || !sessionExists(t, s, bobs) {
			t.Fatal("want the kept session alone left of alice's, and bob's untouched")
		}
		if err := s.SetUserPassword(ctx, alice.ID, []byte("newer-hash"), ""); err != nil {
			t.Fatal(err)
		}
		if sessionExists(t, s, keep) {
			t.Fatal("a reset that keeps no session left one")
		}
		if err := s.SetUserPassword(ctx, uuid.New(), []byte("x"), ""); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown user: got %v, want ErrNotFound", err)
		}
	})

	t.Run("DeleteUserSessions", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		createUsers(t, s, alice, bob)
		a1, a2, a3, b1 := session(t, s, alice, "a1"), session(t, s, alice, "a2"), session(t, s, alice, "a3"), session(t, s, bob, "b1")
		n, err := s.DeleteUserSessions(ctx, alice.ID, a1)
		if err != nil || n != 2 {
			t.Fatalf("DeleteUserSessions keeping one = %d, %v; want 2", n, err)
		}
		if !sessionExists(t, s, a1) || sessionExists(t, s, a2) || sessionExists(t, s, a3) || !sessionExists(t, s, b1) {
			t.Fatal("wrong sessions left")
		}
		if n, err := s.DeleteUserSessions(ctx, alice.ID, ""); err != nil || n != 1 {
			t.Fatalf("DeleteUserSessions of all = %d, %v; want 1", n, err)
		}
	})

	t.Run("DeleteUser", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		createUsers(t, s, alice, bob)
		b1 := session(t, s, bob, "b1")
		for i, name := range []string{"two", "one"} {
			w := store.Workspace{ID: uuid.New(), Name: name, OwnerID: bob.ID, AgentTokenHash: store.HashToken(name), CreatedAt: now.Add(time.Duration(i))}
			if err := s.CreateWorkspace(ctx, w, 0); err != nil {
				t.Fatal(err)
			}
		}
		alices := store.Workspace{ID: uuid.New(), Name: "mine", OwnerID: alice.ID, AgentTokenHash: store.HashToken("mine"), CreatedAt: now}
		if err := s.CreateWorkspace(ctx, alices, 0); err != nil {
			t.Fatal(err)
		}
		ws, err := s.DeleteUser(ctx, bob.ID, false)
		if !errors.Is(err, store.ErrHasWorkspaces) || len(ws) != 2 || ws[0].Name != "one" || ws[1].Name != "two" {
			t.Fatalf("deleting a user with workspaces = %+v, %v; want ErrHasWorkspaces and both, by name", ws, err)
		}
		if _, err := s.UserByID(ctx, bob.ID); err != nil || !sessionExists(t, s, b1) {
			t.Fatalf("a refused delete changed something: %v", err)
		}
		ws, err = s.DeleteUser(ctx, bob.ID, true)
		if err != nil || len(ws) != 2 {
			t.Fatalf("deleting with workspaces = %+v, %v", ws, err)
		}
		if _, err := s.UserByID(ctx, bob.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted user still there: %v", err)
		}
		if sessionExists(t, s, b1) {
			t.Fatal("deleted user's session still there")
		}
		for _, w := range ws {
			if _, err := s.WorkspaceByID(ctx, w.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("deleted user's workspace %s still there: %v", w.Name, err)
			}
		}
		if _, err := s.WorkspaceByID(ctx, alices.ID); err != nil {
			t.Fatalf("another user's workspace went too: %v", err)
		}
		if _, err := s.DeleteUser(ctx, bob.ID, true); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: got %v, want ErrNotFound", err)
		}
		// A user without workspaces needs no flag; a user of the same
		// name can be created afresh.
		carol := newUser("carol", tether.RoleMember)
		createUsers(t, s, carol, newUser("bob", tether.RoleMember))
		if _, err := s.DeleteUser(ctx, carol.ID, false); err != nil {
			t.Fatalf("deleting a user without workspaces: %v", err)
		}
	})
}

func countActiveAdmins(t *testing.T, ctx context.Context, s store.Store) int {
	t.Helper()
	users, err := s.ListUsers(ctx, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range users {
		if u.Role == tether.RoleAdmin && u.Status == tether.UserActive {
			n++
		}
	}
	return n
}

// concurrently runs fn(0) … fn(n-1) at once, as far as the store lets
// them: a first round of reads makes a connection pool open its
// connections, so that the calls that matter do not queue for one.
func concurrently(ctx context.Context, s store.Store, n int, fn func(i int)) {
	run := func(f func(i int)) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() { <-start; f(i) })
		}
		close(start)
		wg.Wait()
	}
	run(func(int) { s.CountUsers(ctx) })
	run(fn)
}

// runLists checks pagination and the workspace limit.
func runLists(t *testing.T, ctx context.Context, open func(t *testing.T) store.Store, now time.Time, newUser func(string, tether.Role) store.User) {
	t.Run("Pages", func(t *testing.T) {
		s := open(t)
		// Names that sort differently byte by byte and by a locale.
		names := []string{"b", "a-z", "a", "az", "c9", "c-1"}
		owners := map[string]store.User{}
		for _, n := range names {
			u := newUser(n, tether.RoleMember)
			owners[n] = u
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"y", "x-1", "x"} {
				ws := store.Workspace{ID: uuid.New(), Name: w, OwnerID: u.ID, AgentTokenHash: store.HashToken(n + "/" + w), CreatedAt: now}
				if err := s.CreateWorkspace(ctx, ws, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		sorted := slices.Clone(names)
		slices.Sort(sorted) // byte order

		for _, size := range []int{1, 2, 4, 100} {
			var got []string
			after := ""
			for range 100 {
				page, err := s.ListUsers(ctx, store.Page{After: after, Limit: size})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > size {
					t.Fatalf("page of %d has %d users", size, len(page))
				}
				for _, u := range page {
					got = append(got, u.Username)
				}
				if len(page) < size {
					break
				}
				after = page[len(page)-1].Username
			}
			if !slices.Equal(got, sorted) {
				t.Fatalf("users in pages of %d: %v, want %v", size, got, sorted)
			}
		}

		var want []string
		for _, o := range sorted {
			for _, w := range []string{"x", "x-1", "y"} {
				want = append(want, o+"/"+w)
			}
		}
		for _, size := range []int{1, 4, 5, 100} {
			var got []string
			after := ""
			for range 100 {
				page, err := s.ListWorkspaces(ctx, uuid.Nil, store.Page{After: after, Limit: size})
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range page {
					got = append(got, store.WorkspaceKey(w.Owner, w.Name))
				}
				if len(page) < size {
					break
				}
				after = store.WorkspaceKey(page[len(page)-1].Owner, page[len(page)-1].Name)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("workspaces in pages of %d: %v, want %v", size, got, want)
			}
		}
		page, err := s.ListWorkspaces(ctx, owners["az"].ID, store.Page{After: "az/x", Limit: 1})
		if err != nil || len(page) != 1 || page[0].Name != "x-1" {
			t.Fatalf("one owner's page after az/x = %+v, %v", page, err)
		}
	})

	t.Run("WorkspaceLimit", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		for _, u := range []store.User{alice, bob} {
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		create := func(owner store.User, name string, limit int) error {
			return s.CreateWorkspace(ctx, store.Workspace{ID: uuid.New(), Name: name, OwnerID: owner.ID,
				AgentTokenHash: store.HashToken(owner.Username + name), CreatedAt: now}, limit)
		}
		// Concurrent creations cannot pass the limit.
		const limit, tries = 3, 12
		errs := make([]error, tries)
		concurrently(ctx, s, tries, func(i int) { errs[i] = create(bob, fmt.Sprintf("w%d", i), limit) })
		created := 0
		for _, err := range errs {
			switch {
			case err == nil:
				created++
			case !errors.Is(err, store.ErrLimit):
				t.Fatalf("create over the limit: got %v, want ErrLimit", err)
			}
		}
		if created != limit {
			t.Fatalf("%d concurrent creations with a limit of %d made %d workspaces", tries, limit, created)
		}
		if err := create(alice, "w0", limit); err != nil {
			t.Fatalf("another owner under the limit: %v", err)
		}
		if err := create(bob, "more", 0); err != nil {
			t.Fatalf("no limit: %v", err)
		}
	})
}
