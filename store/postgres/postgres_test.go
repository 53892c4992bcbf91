package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/pgtest"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/postgres"
	"github.com/tetherdev/tether/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// adminQueryRow runs one query on the test database and scans its row.
func adminQueryRow(t *testing.T, sql string, dest ...any) {
	t.Helper()
	if err := pgtest.Connect(t).QueryRow(pgtest.Context(t), sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// open opens the store at dbURL and closes it when the test ends.
func open(t *testing.T, dbURL string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(pgtest.Context(t), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	pgtest.BaseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		dbURL, _ := pgtest.NewSchema(t)
		return open(t, dbURL)
	})
}

// Several replicas share one database: each sees what the other writes,
// and either may close first.
func TestReplicasShareTheDatabase(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	first, second := open(t, dbURL), open(t, dbURL)
	ctx := pgtest.Context(t)
	alice := newUser("alice")
	if err := first.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if got, err := second.UserByID(ctx, alice.ID); err != nil || got.Username != "alice" {
		t.Fatalf("the second replica reads the first's user: %+v, %v", got, err)
	}
	if err := second.CreateUser(ctx, newUser("alice")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("the second replica creates a user the first has: got %v, want ErrConflict", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("close the first replica: %v", err)
	}
	if err := second.CreateUser(ctx, newUser("bob")); err != nil {
		t.Fatalf("the second replica after the first closed: %v", err)
	}
}

// Replicas that start together on an empty schema all open, and each
// migration runs once.
func TestConcurrentOpensMigrateOnce(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	ctx := pgtest.Context(t)
	const n = 4
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		opened []*postgres.DB
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(ctx, dbURL)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			mu.Lock()
			opened = append(opened, db)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, db := range opened {
		if _, err := db.CountUsers(ctx); err != nil {
			t.Errorf("CountUsers: %v", err)
		}
		db.Close()
	}
	if len(opened) != n {
		t.Fatalf("%d of %d concurrent Opens succeeded", len(opened), n)
	}
	var count int
	adminQueryRow(t, `SELECT count(*) FROM `+schema+`.tether_schema_migrations`, &count)
	if count != postgres.MigrationCount {
		t.Fatalf("%d migrations recorded; want %d", count, postgres.MigrationCount)
	}
}

func TestSchemasAreIndependent(t *testing.T) {
	urlA, _ := pgtest.NewSchema(t)
	urlB, _ := pgtest.NewSchema(t)
	a, b := open(t, urlA), open(t, urlB)
	ctx := pgtest.Context(t)
	if err := a.CreateUser(ctx, newUser("alice")); err != nil {
		t.Fatal(err)
	}
	if n, err := b.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("users in the other schema: %d, %v; want 0", n, err)
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	ctx := pgtest.Context(t)
	db := open(t, dbURL)
	if err := db.CreateSession(ctx, store.Session{TokenHash: "h"}); err == nil {
		t.Fatal("session for a missing user was accepted: foreign keys are not enforced")
	}
	alice := newUser("alice")
	if err := db.CreateUser(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	versions := `SELECT count(*), max(version), max(applied_at) FROM ` + schema + `.tether_schema_migrations`
	var count, version int
	var applied time.Time
	adminQueryRow(t, versions, &count, &version, &applied)
	if count != postgres.MigrationCount || version != postgres.MigrationCount {
		t.Fatalf("after the first open: %d migrations recorded, version %d; want %d", count, version, postgres.MigrationCount)
	}

	db = open(t, dbURL)
	if got, err := db.UserByID(ctx, alice.ID); err != nil || got.Username != "alice" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	var count2, version2 int
	var applied2 time.Time
	adminQueryRow(t, versions, &count2, &version2, &applied2)
	if count2 != count || version2 != version || !applied2.Equal(applied) {
		t.Fatalf("reopen ran migrations again: %d rows, version %d, applied %v; was %d, %d, %v",
			count2, version2, applied2, count, version, applied)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	if err := open(t, dbURL).Close(); err != nil {
		t.Fatal(err)
	}
	// Pretend a newer tether migrated this schema.
	pgtest.Exec(t, `INSERT INTO `+schema+`.tether_schema_migrations (version) VALUES (99)`)
	_, err := postgres.Open(pgtest.Context(t), dbURL)
	if err == nil || !strings.Contains(err.Error(), "upgrade tether") {
		t.Fatalf("got %v, want a refusal that says to upgrade", err)
	}
}

func TestCreateFirstUserIsAtomic(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	db := open(t, dbURL)
	ctx := pgtest.Context(t)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- db.CreateFirstUser(ctx, newUser(fmt.Sprintf("user%d", i))) }()
	}
	created := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			created++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("CreateFirstUser: got %v, want nil or ErrConflict", err)
		}
	}
	if created != 1 {
		t.Fatalf("%d first users created; want 1", created)
	}
	if count, err := db.CountUsers(ctx); err != nil || count != 1 {
		t.Fatalf("CountUsers = %d, %v; want 1", count, err)
	}
}

// Lists sort byte by byte, as store/sqlite's do, whatever the database's
// locale.
func TestListsSortBytewise(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	db := open(t, dbURL)
	ctx := pgtest.Context(t)
	for _, name := range []string{"alice", "_x", "Bob"} {
		if err := db.CreateUser(ctx, newUser(name)); err != nil {
			t.Fatal(err)
		}
	}
	users, err := db.ListUsers(ctx, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range users {
		names = append(names, u.Username)
	}
	if got, want := strings.Join(names, " "), "Bob _x alice"; got != want {
		t.Fatalf("ListUsers order: %s; want %s", got, want)
	}
}

func TestWrongPasswordIsNotEchoed(t *testing.T) {
	pgtest.CheckWrongPassword(t, openCloser)
}

// TestBadURLs needs no database: none of these URLs reaches one.
func TestBadURLs(t *testing.T) {
	pgtest.CheckBadURLs(t, openCloser)
}

// openCloser is postgres.Open as a pgtest.Opener.
func openCloser(ctx context.Context, dbURL string) (io.Closer, error) {
	return postgres.Open(ctx, dbURL)
}

func newUser(name string) store.User {
	return store.User{
		User: tether.User{ID: uuid.New(), Username: name, Email: name + "@example.com",
			Role: tether.RoleMember, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)},
		PasswordHash: []byte("hash-of-" + name),
	}
}
