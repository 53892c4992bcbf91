package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
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

// A database this process may not write is refused with what is wrong and
// what to do, not only SQLite's "unable to open database file (14)".
func TestOpenExplainsPermissions(t *testing.T) {
	tests := []struct {
		name            string
		dirMode, dbMode os.FileMode
		want            []string
	}{
		{"read-only file", 0o777, 0o444, []string{"tether.db is read-only for this process (uid ", "fix the permissions"}},
		{"read-only directory", 0o555, 0o666, []string{"data directory", "does not let this process (uid ", "tether.db-wal"}},
		{"closed directory", 0o000, 0o666, []string{"data directory", "does not let this process (uid ", "fix the permissions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			open(t, dir).Close()
			if err := os.Chmod(filepath.Join(dir, sqlite.FileName), tc.dbMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			msg := openAsAnotherUser(t, dir)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("open: %s\nwant it to say %q", msg, w)
				}
			}
		})
	}
}

// childDirEnv names the data directory that TestOpenChild opens, in the
// child process that openAsAnotherUser starts.
const childDirEnv = "TETHER_SQLITE_TEST_OPEN_DIR"

// openAsAnotherUser opens the store in dir and returns the error message.
// Permissions do not bind root, so as root it opens it in a copy of this
// test binary running as nobody (uid 65534).
func openAsAnotherUser(t *testing.T, dir string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		_, err := sqlite.Open(context.Background(), dir)
		if err == nil {
			t.Fatal("open succeeded")
		}
		return err.Error()
	}
	// nobody must reach the data directory and run the binary.
	for d := filepath.Dir(dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binDir := filepath.Join(filepath.Dir(dir), "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "sqlite.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestOpenChild$", "-test.count=1")
	cmd.Env = []string{childDirEnv + "=" + dir, "PATH=/usr/bin:/bin"}
	cmd.Dir = binDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	_, msg, ok := strings.Cut(string(out), "OPEN ERROR: ")
	if !ok {
		t.Fatalf("the child printed no open error:\n%s", out)
	}
	msg, _, _ = strings.Cut(msg, "\n")
	return msg
}

// TestOpenChild is the child of openAsAnotherUser; it does nothing
// otherwise.
func TestOpenChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("runs only as openAsAnotherUser's child")
	}
	db, err := sqlite.Open(context.Background(), dir)
	if err == nil {
		db.Close()
		t.Fatal("open succeeded")
	}
	fmt.Println("OPEN ERROR: " + err.Error())
}

// A full database (here capped by max_page_count, as a full disk would)
// fails writes with ErrStorageFull, loses none that succeeded, and works
// again once there is room.
func TestStorageFull(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := open(t, dir)
	pages, err := sqlite.PageCount(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlite.SetMaxPageCount(db, pages+4); err != nil {
		t.Fatal(err)
	}
	var created []uuid.UUID
	var fullErr error
	for i := range 1000 {
		u := store.User{User: tether.User{ID: uuid.New(), Username: fmt.Sprintf("u%d", i), Email: fmt.Sprintf("u%d@example.com", i),
			Role: tether.RoleMember, CreatedAt: time.Now()}, PasswordHash: []byte(strings.Repeat("h", 2000))}
		if fullErr = db.CreateUser(ctx, u); fullErr != nil {
			break
		}
		created = append(created, u.ID)
	}
	if !errors.Is(fullErr, store.ErrStorageFull) {
		t.Fatalf("writing past the cap: got %v, want ErrStorageFull", fullErr)
	}
	if len(created) == 0 {
		t.Fatal("no write fit; the cap is too low to test anything")
	}
	if _, err := db.CountUsers(ctx); err != nil {
		t.Fatalf("reading a full database: %v", err)
	}
	if err := sqlite.SetMaxPageCount(db, 1<<30); err != nil {
		t.Fatal(err)
	}
	more := store.User{User: tether.User{ID: uuid.New(), Username: "more", Email: "more@example.com", Role: tether.RoleMember}, PasswordHash: []byte("h")}
	if err := db.CreateUser(ctx, more); err != nil {
		t.Fatalf("writing once there is room: %v", err)
	}
	created = append(created, more.ID)
	db.Close()

	db = open(t, dir)
	defer db.Close()
	for _, id := range created {
		if _, err := db.UserByID(ctx, id); err != nil {
			t.Fatalf("an acknowledged user is gone after reopening: %v", err)
		}
	}
	if n, err := db.CountUsers(ctx); err != nil || n != len(created) {
		t.Fatalf("%d users after reopening, %v; want %d", n, err, len(created))
	}
}
