package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/postgres"
	"github.com/tetherdev/tether/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// urlEnv names the variable that points the tests at a PostgreSQL database
// they may create and drop schemas in.
const urlEnv = "TETHER_TEST_POSTGRES_URL"

// testTimeout bounds each test's round trips to the database.
const testTimeout = 30 * time.Second

// baseURL returns the test database's URL, or skips the test if there is
// none; in CI, where these tests must run, it fails instead.
func baseURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv(urlEnv)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL store tests", urlEnv)
		}
		t.Skipf("PostgreSQL store tests skipped: set %s, for example to postgres://tether:tether@127.0.0.1:5432/tether_test?sslmode=disable", urlEnv)
	}
	return u
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// adminExec runs one statement on the test database outside any store.
func adminExec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL(t))
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// adminQueryRow runs one query on the test database and scans its row.
func adminQueryRow(t *testing.T, sql string, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL(t))
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// newSchema creates an empty schema with a unique name, dropped when the
// test ends, and returns it with a URL that selects it.
func newSchema(t *testing.T) (dbURL, schema string) {
	t.Helper()
	u, err := url.Parse(baseURL(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", urlEnv)
	}
	schema = "tether_test_" + randomHex(t, 8)
	adminExec(t, `CREATE SCHEMA `+schema)
	t.Cleanup(func() { adminExec(t, `DROP SCHEMA `+schema+` CASCADE`) })
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}

// open opens the store at dbURL and closes it when the test ends.
func open(t *testing.T, dbURL string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(testContext(t), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	baseURL(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		dbURL, _ := newSchema(t)
		return open(t, dbURL)
	})
}

// Several replicas share one database: each sees what the other writes,
// and either may close first.
func TestReplicasShareTheDatabase(t *testing.T) {
	dbURL, _ := newSchema(t)
	first, second := open(t, dbURL), open(t, dbURL)
	ctx := testContext(t)
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
	dbURL, schema := newSchema(t)
	ctx := testContext(t)
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
	urlA, _ := newSchema(t)
	urlB, _ := newSchema(t)
	a, b := open(t, urlA), open(t, urlB)
	ctx := testContext(t)
	if err := a.CreateUser(ctx, newUser("alice")); err != nil {
		t.Fatal(err)
	}
	if n, err := b.CountUsers(ctx); err != nil || n != 0 {
		t.Fatalf("users in the other schema: %d, %v; want 0", n, err)
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	dbURL, schema := newSchema(t)
	ctx := testContext(t)
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
	dbURL, schema := newSchema(t)
	if err := open(t, dbURL).Close(); err != nil {
		t.Fatal(err)
	}
	// Pretend a newer tether migrated this schema.
	adminExec(t, `INSERT INTO `+schema+`.tether_schema_migrations (version) VALUES (99)`)
	_, err := postgres.Open(testContext(t), dbURL)
	if err == nil || !strings.Contains(err.Error(), "upgrade tether") {
		t.Fatalf("got %v, want a refusal that says to upgrade", err)
	}
}

func TestCreateFirstUserIsAtomic(t *testing.T) {
	dbURL, _ := newSchema(t)
	db := open(t, dbURL)
	ctx := testContext(t)
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
	dbURL, _ := newSchema(t)
	db := open(t, dbURL)
	ctx := testContext(t)
	for _, name := range []string{"alice", "_x", "Bob"} {
		if err := db.CreateUser(ctx, newUser(name)); err != nil {
			t.Fatal(err)
		}
	}
	users, err := db.ListUsers(ctx)
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
	u, err := url.Parse(baseURL(t))
	if err != nil {
		t.Fatalf("%s must be a postgres:// URL", urlEnv)
	}
	secret := "wrong-" + randomHex(t, 8)
	u.User = url.UserPassword(u.User.Username(), secret)
	db, err := postgres.Open(testContext(t), u.String())
	if err == nil {
		db.Close()
		t.Skip("the test server accepted a wrong password: it does not check passwords (trust authentication?)")
	}
	msg := err.Error()
	if strings.Contains(msg, secret) {
		t.Fatalf("the error repeats the password: %v", err)
	}
	if !strings.Contains(msg, "password") || !strings.Contains(msg, u.Hostname()) {
		t.Fatalf("got %v, want it to name the host and say to check the password", err)
	}
}

// TestBadURLs needs no database: none of these URLs reaches one.
func TestBadURLs(t *testing.T) {
	const secret = "s3cret-pw-d0nt-show"
	closedPort := freePort(t)
	tests := []struct {
		name string
		url  string
		want string // in the error
	}{
		{"empty", "", "URL is empty"},
		{"bad port", "postgres://tether:" + secret + "@127.0.0.1:notaport/tether", "does not parse"},
		{"bad sslmode", "postgres://tether:" + secret + "@127.0.0.1/tether?sslmode=bogus", "does not parse"},
		{"bad escape in password", "postgres://tether:" + secret + "%zz@127.0.0.1/tether", "does not parse"},
		{"nothing listening", "postgres://tether:" + secret + "@" + closedPort + "/tether?sslmode=disable", "check that PostgreSQL is running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.Open(testContext(t), tt.url)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the password: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("names the host", func(t *testing.T) {
		_, err := postgres.Open(testContext(t), "postgres://tether:"+secret+"@"+closedPort+"/tether?sslmode=disable")
		if err == nil || !strings.Contains(err.Error(), closedPort) {
			t.Fatalf("got %v, want it to name %s", err, closedPort)
		}
	})
}

// freePort returns a local address where, most likely, nothing listens.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newUser(name string) store.User {
	return store.User{
		User: tether.User{ID: uuid.New(), Username: name, Email: name + "@example.com",
			Role: tether.RoleMember, CreatedAt: time.Now().UTC().Truncate(time.Microsecond)},
		PasswordHash: []byte("hash-of-" + name),
	}
}
