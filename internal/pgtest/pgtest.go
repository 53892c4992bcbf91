// Package pgtest gives tests a PostgreSQL database of their own: each test
// gets a fresh schema in the database that TETHER_TEST_POSTGRES_URL names
// (.ci/run starts one and sets it), so tests in different packages, and
// runs on one machine, never see each other's tables. Without the variable
// the tests are skipped, except in CI, where they must run.
//
// Only tests import this package; it imports testing, which the root
// package's TestImportDirection keeps out of the tether binary.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// URLEnv names the variable that points the tests at a PostgreSQL database
// they may create and drop schemas in.
const URLEnv = "TETHER_TEST_POSTGRES_URL"

// Timeout bounds each test's round trips to the database: generous, for a
// loaded machine, and still short of go test's own timeout.
const Timeout = 30 * time.Second

// BaseURL returns the test database's URL, or skips the test if there is
// none; in CI, where these tests must run, it fails instead.
func BaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(URLEnv)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests (.ci/run starts PostgreSQL and sets it)", URLEnv)
		}
		t.Skipf("PostgreSQL tests skipped: set %s, for example to postgres://tether:tether@127.0.0.1:5432/tether_test?sslmode=disable", URLEnv)
	}
	return u
}

// Context returns a context that ends after Timeout, or when the test
// ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// RandomHex returns n random bytes in hex, for names and passwords that
// must not collide with another test's.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand's promise since Go 1.24)
	return hex.EncodeToString(b)
}

// Connect connects to the test database outside the code under test, for
// a test that inspects or breaks what that code left there. The
// connection is closed when the test ends.
func Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, BaseURL(t))
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

// Exec runs one statement on the test database outside the code under
// test, on a connection of its own, and fails the test if it fails.
func Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if err := exec(t, sql, args...); err != nil {
		t.Fatal(err)
	}
}

func exec(t testing.TB, sql string, args ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, BaseURL(t))
	if err != nil {
		return fmt.Errorf("connect to the test database: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// NewSchema creates an empty schema with a unique name, dropped with
// everything in it when the test ends, and returns it with a URL of the
// test database whose search_path selects it. Code under test that is
// given dbURL puts its tables there.
func NewSchema(t testing.TB) (dbURL, schema string) {
	t.Helper()
	u, err := url.Parse(BaseURL(t))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", URLEnv)
	}
	schema = "tether_test_" + RandomHex(8)
	Exec(t, `CREATE SCHEMA `+schema)
	t.Cleanup(func() {
		// Errorf, not Fatal: the test's other cleanups should still run.
		if err := exec(t, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
			t.Errorf("drop the test's schema: %v", err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema
}

// ClosedAddr returns a loopback address where, most likely, nothing
// listens, for URLs of a server that is not there.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
