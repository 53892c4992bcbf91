package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/sqlite"
	"github.com/tetherdev/tether/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db := open(t, t.TempDir())
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	ctx := context.Background()
	if err := db.CreateSession(ctx, store.Session{TokenHash: "h"}); err == nil {
		t.Fatal("session for a missing user was accepted: foreign keys are off")
	}
	db.Close()
	db = open(t, dir)
	defer db.Close()
	if n, err := db.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("after reopen: %d, %v", n, err)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	db.Close()
	// Pretend a newer tether migrated this file.
	if err := bumpUserVersion(filepath.Join(dir, sqlite.FileName)); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "upgrade tether") {
		t.Fatalf("got %v, want a refusal that says to upgrade", err)
	}
}

func bumpUserVersion(path string) error {
	// The user_version field is a big-endian uint32 at offset 60 of the
	// database header.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt([]byte{0, 0, 0, 99}, 60)
	return err
}
