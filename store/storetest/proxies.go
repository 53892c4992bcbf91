package storetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether/store"
)

// runProxies checks workspace proxies and deployment secrets.
func runProxies(t *testing.T, ctx context.Context, open func(t *testing.T) store.Store, now time.Time) {
	t.Run("WorkspaceProxies", func(t *testing.T) {
		s := open(t)
		newProxy := func(name, token string) store.WorkspaceProxy {
			return store.WorkspaceProxy{ID: uuid.New(), Name: name, DisplayName: "The " + name, Icon: "/icon.svg",
				TokenHash: store.HashToken(token), RegionID: 1, CreatedAt: now}
		}
		a, err := s.CreateWorkspaceProxy(ctx, newProxy("eu", "ta"))
		if err != nil {
			t.Fatal(err)
		}
		if a.RegionID != store.FirstProxyRegionID || a.DisplayName != "The eu" || !a.CreatedAt.Equal(now) || !a.LastHeartbeat.IsZero() {
			t.Fatalf("created: %+v", a)
		}
		b, err := s.CreateWorkspaceProxy(ctx, newProxy("asia", "tb"))
		if err != nil {
			t.Fatal(err)
		}
		if b.RegionID != store.FirstProxyRegionID+1 {
			t.Fatalf("second region ID = %d, want %d", b.RegionID, store.FirstProxyRegionID+1)
		}
		if _, err := s.CreateWorkspaceProxy(ctx, newProxy("eu", "tc")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate name: got %v, want ErrConflict", err)
		}
		list, err := s.ListWorkspaceProxies(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "asia" || list[1].Name != "eu" {
			t.Fatalf("list = %+v, %v", list, err)
		}
		if got, err := s.WorkspaceProxyByTokenHash(ctx, store.HashToken("ta")); err != nil || got.ID != a.ID {
			t.Fatalf("by token: %+v, %v", got, err)
		}
		if err := s.SetWorkspaceProxyTokenHash(ctx, a.ID, store.HashToken("ta2")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.WorkspaceProxyByTokenHash(ctx, store.HashToken("ta")); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("old token still works: %v", err)
		}
		hb := store.ProxyHeartbeat{URL: "https://eu.example.com", WildcardURL: "*.apps.eu.example.com", Version: "v1", STUNPort: 3478, At: now.Add(time.Second)}
		if err := s.WorkspaceProxyHeartbeat(ctx, a.ID, hb); err != nil {
			t.Fatal(err)
		}
		got, err := s.WorkspaceProxyByName(ctx, "eu")
		if err != nil || got.URL != hb.URL || got.WildcardURL != hb.WildcardURL || got.Version != "v1" || got.STUNPort != 3478 ||
			!got.LastHeartbeat.Equal(hb.At) || got.TokenHash != store.HashToken("ta2") {
			t.Fatalf("after heartbeat: %+v, %v", got, err)
		}
		if err := s.DeleteWorkspaceProxy(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteWorkspaceProxy(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		if err := s.WorkspaceProxyHeartbeat(ctx, a.ID, hb); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("heartbeat of a deleted proxy: %v", err)
		}
		if _, err := s.WorkspaceProxyByName(ctx, "eu"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted proxy found: %v", err)
		}
		// A new proxy never takes a region ID in use.
		c, err := s.CreateWorkspaceProxy(ctx, newProxy("us", "td"))
		if err != nil || c.RegionID == b.RegionID {
			t.Fatalf("third proxy: %+v, %v", c, err)
		}
	})

	t.Run("DeploymentSecret", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		got := make([][]byte, 4)
		for i := range got {
			wg.Go(func() {
				v, err := s.DeploymentSecret(ctx, "signing", func() []byte { return []byte{byte(i), 1, 2} })
				if err != nil {
					t.Error(err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		for _, v := range got[1:] {
			if !bytes.Equal(v, got[0]) || len(v) != 3 {
				t.Fatalf("secrets differ: %v", got)
			}
		}
		other, err := s.DeploymentSecret(ctx, "other", func() []byte { return []byte("x") })
		if err != nil || string(other) != "x" {
			t.Fatalf("other secret = %q, %v", other, err)
		}
	})
}
