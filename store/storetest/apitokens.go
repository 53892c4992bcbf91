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

// runAPITokens checks API tokens: stored by hash, named uniquely per user,
// listed per user, deleted only by their owner, and left alone by the
// changes that end sessions.
func runAPITokens(t *testing.T, ctx context.Context, open func(t *testing.T) store.Store, now time.Time, newUser func(string, tether.Role) store.User) {
	t.Run("APITokens", func(t *testing.T) {
		s := open(t)
		alice, bob := newUser("alice", tether.RoleAdmin), newUser("bob", tether.RoleMember)
		admin2 := newUser("carol", tether.RoleAdmin)
		for _, u := range []store.User{alice, bob, admin2} {
			if err := s.CreateUser(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		ci := store.APIToken{ID: uuid.New(), Name: "ci", TokenHash: store.HashToken("t1"), UserID: alice.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateAPIToken(ctx, ci); err != nil {
			t.Fatal(err)
		}
		dup := ci
		dup.ID, dup.TokenHash = uuid.New(), store.HashToken("t2")
		if err := s.CreateAPIToken(ctx, dup); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second token named ci: got %v, want ErrConflict", err)
		}
		bobs := store.APIToken{ID: uuid.New(), Name: "ci", TokenHash: store.HashToken("t3"), UserID: bob.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := s.CreateAPIToken(ctx, bobs); err != nil {
			t.Fatalf("same name, other user: %v", err)
		}
		deploy := store.APIToken{ID: uuid.New(), Name: "deploy", TokenHash: store.HashToken("t4"), UserID: alice.ID, CreatedAt: now, ExpiresAt: now.Add(-time.Hour)}
		if err := s.CreateAPIToken(ctx, deploy); err != nil {
			t.Fatal(err)
		}

		got, err := s.APITokenByHash(ctx, ci.TokenHash)
		if err != nil || got.ID != ci.ID || got.UserID != alice.ID || got.Name != "ci" || !got.ExpiresAt.Equal(ci.ExpiresAt) || !got.LastUsedAt.IsZero() {
			t.Fatalf("APITokenByHash = %+v, %v", got, err)
		}
		if _, err := s.APITokenByHash(ctx, store.HashToken("nope")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown token: got %v, want ErrNotFound", err)
		}
		used := now.Add(time.Minute)
		if err := s.APITokenUsed(ctx, ci.ID, used); err != nil {
			t.Fatal(err)
		}
		list, err := s.ListAPITokens(ctx, alice.ID)
		if err != nil || len(list) != 2 || list[0].Name != "ci" || list[1].Name != "deploy" || !list[0].LastUsedAt.Equal(used) {
			t.Fatalf("ListAPITokens(alice) = %+v, %v; want ci (used), deploy (expired, still listed)", list, err)
		}

		// Ending sessions, a new password and suspension leave tokens
		// alone: the server refuses a suspended user's tokens itself.
		if _, err := s.DeleteUserSessions(ctx, alice.ID, ""); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUserPassword(ctx, alice.ID, []byte("new"), ""); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUserStatus(ctx, alice.ID, tether.UserSuspended); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteExpiredSessions(ctx, now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.APITokenByHash(ctx, ci.TokenHash); err != nil {
			t.Fatalf("token after the user's sessions ended: %v", err)
		}

		if _, err := s.DeleteAPIToken(ctx, bob.ID, ci.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("bob deleting alice's token: got %v, want ErrNotFound", err)
		}
		gone, err := s.DeleteAPIToken(ctx, alice.ID, ci.ID)
		if err != nil || gone.TokenHash != ci.TokenHash || gone.Name != "ci" {
			t.Fatalf("DeleteAPIToken = %+v, %v", gone, err)
		}
		if _, err := s.APITokenByHash(ctx, ci.TokenHash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted token still there: %v", err)
		}
		if _, err := s.DeleteAPIToken(ctx, alice.ID, ci.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: got %v, want ErrNotFound", err)
		}
		if err := s.APITokenUsed(ctx, ci.ID, used); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("use of a deleted token: got %v, want ErrNotFound", err)
		}

		// Tokens go with their user.
		if _, err := s.DeleteUser(ctx, bob.ID, false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.APITokenByHash(ctx, bobs.TokenHash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("token of a deleted user still there: %v", err)
		}
		if list, err := s.ListAPITokens(ctx, bob.ID); err != nil || len(list) != 0 {
			t.Fatalf("ListAPITokens(deleted bob) = %+v, %v", list, err)
		}
	})
}
