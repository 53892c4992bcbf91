// Package storetest is a conformance suite that every store.Store
// implementation must pass.
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// Run runs the suite. open returns a fresh, empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := time.Now().UTC().Truncate(time.Microsecond)

	newUser := func(name string, role tether.Role) store.User {
		return store.User{
			User:         tether.User{ID: uuid.New(), Username: name, Email: name + "@example.com", Role: role, CreatedAt: now},
			PasswordHash: []byte("hash-of-" + name),
		}
	}

	t.Run("FirstUserOnlyOnce", func(t *testing.T) {
		s := open(t)
		if err := s.CreateFirstUser(ctx, newUser("alice", tether.RoleAdmin)); err != nil {
			t.Fatal(err)
		}
		err := s.CreateFirstUser(ctx, newUser("bob", tether.RoleAdmin))
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second first user: got %v, want ErrConflict", err)
		}
		if n, err := s.CountUsers(ctx); err != nil || n != 1 {
			t.Fatalf("CountUsers = %d, %v; want 1", n, err)
		}
	})

	t.Run("Users", func(t *testing.T) {
		s := open(t)
		a := newUser("alice", tether.RoleAdmin)
		if err := s.CreateUser(ctx, a); err != nil {
			t.Fatal(err)
		}
		dup := newUser("alice", tether.RoleMember)
		if err := s.CreateUser(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate username: got %v, want ErrConflict", err)
		}
		dupEmail := newUser("other", tether.RoleMember)
		dupEmail.Email = "ALICE@example.com"
		if err := s.CreateUser(ctx, dupEmail); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate email (other case): got %v, want ErrConflict", err)
		}
		for _, login := range []string{"alice", "alice@example.com", "Alice@Example.com"} {
			got, err := s.UserByLogin(ctx, login)
			if err != nil || got.ID != a.ID || string(got.PasswordHash) != string(a.PasswordHash) {
				t.Fatalf("UserByLogin(%q) = %+v, %v", login, got, err)
			}
		}
		if _, err := s.UserByLogin(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown login: got %v, want ErrNotFound", err)
		}
		got, err := s.UserByID(ctx, a.ID)
		if err != nil || got.Username != "alice" || got.Role != tether.RoleAdmin || !got.CreatedAt.Equal(now) {
			t.Fatalf("UserByID = %+v, %v", got, err)
		}
		if err := s.CreateUser(ctx, newUser("bob", tether.RoleMember)); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListUsers(ctx, store.Page{})
		if err != nil || len(list) != 2 || list[0].Username != "alice" || list[1].Username != "bob" {
			t.Fatalf("ListUsers = %+v, %v", list, err)
		}
		if list[0].Status != tether.UserActive || got.Status != tether.UserActive {
			t.Fatalf("a new user's status is %q, want active", list[0].Status)
		}
	})

	t.Run("Sessions", func(t *testing.T) {
		s := open(t)
		u := newUser("alice", tether.RoleAdmin)
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		live := store.Session{TokenHash: store.HashToken("live"), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		old := store.Session{TokenHash: store.HashToken("old"), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(-time.Hour)}
		for _, ss := range []store.Session{live, old} {
			if err := s.CreateSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.SessionByTokenHash(ctx, live.TokenHash)
		if err != nil || got.UserID != u.ID || !got.ExpiresAt.Equal(live.ExpiresAt) {
			t.Fatalf("SessionByTokenHash = %+v, %v", got, err)
		}
		if err := s.DeleteExpiredSessions(ctx, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionByTokenHash(ctx, old.TokenHash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired session still there: %v", err)
		}
		if err := s.DeleteSession(ctx, live.TokenHash); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SessionByTokenHash(ctx, live.TokenHash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted session still there: %v", err)
		}
	})

	t.Run("Templates", func(t *testing.T) {
		s := open(t)
		tpl := store.Template{ID: uuid.New(), Name: "py", AgentURL: "https://x.example.com",
			Apps: []tether.App{{Name: "web", URL: "http://127.0.0.1:8080", Share: tether.ShareOwner,
				Healthcheck: &tether.Healthcheck{URL: "http://127.0.0.1:8080/h", Interval: tether.Duration(5 * time.Second), Threshold: 3}}},
			CreatedAt: now, UpdatedAt: now}
		got, err := s.UpsertTemplate(ctx, tpl)
		if err != nil || got.ID != tpl.ID || len(got.Apps) != 1 || got.Apps[0].Healthcheck.Interval != tpl.Apps[0].Healthcheck.Interval {
			t.Fatalf("UpsertTemplate = %+v, %v", got, err)
		}
		again := tpl
		again.ID = uuid.New()
		again.AgentURL = ""
		again.Apps = nil
		again.UpdatedAt = now.Add(time.Minute)
		got, err = s.UpsertTemplate(ctx, again)
		if err != nil || got.ID != tpl.ID || got.AgentURL != "" || len(got.Apps) != 0 || !got.CreatedAt.Equal(now) {
			t.Fatalf("replacing UpsertTemplate = %+v, %v; want same ID, new contents", got, err)
		}
		if _, err := s.TemplateByName(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown template: %v", err)
		}
		list, err := s.ListTemplates(ctx)
		if err != nil || len(list) != 1 {
			t.Fatalf("ListTemplates = %+v, %v", list, err)
		}
		withScript := again
		withScript.StartupScript, withScript.StartupScriptTimeout = "make deps\n", tether.Duration(90*time.Second)
		if got, err = s.UpsertTemplate(ctx, withScript); err != nil || got.StartupScript != "make deps\n" || got.StartupScriptTimeout != withScript.StartupScriptTimeout {
			t.Fatalf("UpsertTemplate with a startup script = %+v, %v", got, err)
		}
		if got, err = s.TemplateByID(ctx, tpl.ID); err != nil || got.StartupScript != "make deps\n" || got.StartupScriptTimeout != withScript.StartupScriptTimeout {
			t.Fatalf("TemplateByID of a template with a startup script = %+v, %v", got, err)
		}
	})

	t.Run("Workspaces", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		for _, u := range []store.User{alice, bob} {
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		tpl, err := s.UpsertTemplate(ctx, store.Template{ID: uuid.New(), Name: "py", CreatedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		w := store.Workspace{ID: uuid.New(), Name: "dev", OwnerID: alice.ID, TemplateID: tpl.ID, AgentTokenHash: store.HashToken("a"), CreatedAt: now}
		if err := s.CreateWorkspace(ctx, w, 0); err != nil {
			t.Fatal(err)
		}
		dup := w
		dup.ID, dup.AgentTokenHash = uuid.New(), store.HashToken("b")
		if err := s.CreateWorkspace(ctx, dup, 0); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate workspace name: got %v, want ErrConflict", err)
		}
		bobs := store.Workspace{ID: uuid.New(), Name: "dev", OwnerID: bob.ID, AgentTokenHash: store.HashToken("c"), CreatedAt: now}
		if err := s.CreateWorkspace(ctx, bobs, 0); err != nil {
			t.Fatalf("same name, other owner: %v", err)
		}
		got, err := s.WorkspaceByOwnerAndName(ctx, alice.ID, "dev")
		if err != nil || got.ID != w.ID || got.Owner != "alice" || got.Template != "py" {
			t.Fatalf("WorkspaceByOwnerAndName = %+v, %v", got, err)
		}
		got, err = s.WorkspaceByAgentTokenHash(ctx, store.HashToken("c"))
		if err != nil || got.ID != bobs.ID || got.Template != "" {
			t.Fatalf("WorkspaceByAgentTokenHash = %+v, %v", got, err)
		}
		all, err := s.ListWorkspaces(ctx, uuid.Nil, store.Page{})
		if err != nil || len(all) != 2 {
			t.Fatalf("ListWorkspaces(all) = %d, %v", len(all), err)
		}
		mine, err := s.ListWorkspaces(ctx, bob.ID, store.Page{})
		if err != nil || len(mine) != 1 || mine[0].ID != bobs.ID {
			t.Fatalf("ListWorkspaces(bob) = %+v, %v", mine, err)
		}

		t1, t2, t3 := now.Add(time.Second), now.Add(2*time.Second), now.Add(3*time.Second)
		if err := s.AgentConnected(ctx, w.ID, t1, "v1"); err != nil {
			t.Fatal(err)
		}
		if err := s.AgentSeen(ctx, w.ID, t2); err != nil {
			t.Fatal(err)
		}
		got, _ = s.WorkspaceByID(ctx, w.ID)
		if !got.AgentConnectedAt.Equal(t1) || !got.AgentLastSeenAt.Equal(t2) || got.AgentVersion != "v1" || !got.AgentDisconnectedAt.IsZero() {
			t.Fatalf("after connect: %+v", got)
		}
		if err := s.AgentDisconnected(ctx, w.ID, t3); err != nil {
			t.Fatal(err)
		}
		got, _ = s.WorkspaceByID(ctx, w.ID)
		if !got.AgentDisconnectedAt.Equal(t3) {
			t.Fatalf("after disconnect: %+v", got)
		}
		if got.StartupScript != nil {
			t.Fatalf("startup script of a new workspace = %+v, want nil", got.StartupScript)
		}
		code := 3
		t4 := t3.Add(time.Second)
		for _, r := range []tether.StartupScriptResult{
			{StartupScriptStatus: tether.StartupScriptStatus{Status: tether.StartupScriptRunning, StartedAt: t3}, Output: "step 1\n", LogPath: "/home/a/log"},
			{StartupScriptStatus: tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: &code, StartedAt: t3, FinishedAt: &t4},
				Output: "step 1\nstep 2: ünïcode\n", OutputTruncated: true, LogPath: "/home/a/log"},
		} {
			if err := s.SetStartupScript(ctx, w.ID, r); err != nil {
				t.Fatal(err)
			}
			got, _ = s.WorkspaceByID(ctx, w.ID)
			if g := got.StartupScript; g == nil || g.Status != r.Status || (g.ExitCode == nil) != (r.ExitCode == nil) ||
				g.Output != r.Output || g.OutputTruncated != r.OutputTruncated || !g.StartedAt.Equal(r.StartedAt) || g.LogPath != r.LogPath {
				t.Fatalf("after SetStartupScript(%+v): %+v", r, g)
			}
		}
		all, _ = s.ListWorkspaces(ctx, alice.ID, store.Page{})
		if len(all) != 1 || all[0].StartupScript == nil || *all[0].StartupScript.ExitCode != 3 {
			t.Fatalf("ListWorkspaces lost the startup script: %+v", all)
		}
		if err := s.SetStartupScript(ctx, uuid.New(), tether.StartupScriptResult{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("startup script of a missing workspace: got %v, want ErrNotFound", err)
		}
		if err := s.SetAgentTokenHash(ctx, w.ID, store.HashToken("new")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WorkspaceByAgentTokenHash(ctx, store.HashToken("a")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old agent token still works: %v", err)
		}
		if err := s.DeleteWorkspace(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteWorkspace(ctx, w.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: got %v, want ErrNotFound", err)
		}
		if err := s.AgentSeen(ctx, w.ID, t3); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("heartbeat of deleted workspace: got %v, want ErrNotFound", err)
		}
	})
	runUserLifecycle(t, ctx, open, now, newUser)
	runLists(t, ctx, open, now, newUser)
	runAPITokens(t, ctx, open, now, newUser)
	runProxies(t, ctx, open, now)
}
