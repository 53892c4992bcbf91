// Package pgsetup holds what the two users of PostgreSQL, store/postgres
// and replica, do alike when they connect: parse the URL without ever
// repeating it, name the server in messages without the password, say
// what to check when connecting fails, and derive advisory lock keys. Each
// of them opens its own pool; this package opens nothing.
package pgsetup

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ParseConfig parses a PostgreSQL URL, as given to --postgres-url, into a
// pool configuration. Its errors never repeat the URL, and callers add
// what they were doing (fmt.Errorf("open PostgreSQL store: %w", err)).
//
// Unless the URL sets application_name, the connections are named
// "tether", so that operators can tell Tether's apart in
// pg_stat_activity.
func ParseConfig(url string) (*pgxpool.Config, error) {
	if url == "" {
		return nil, errors.New("the database URL is empty; want postgres://user:password@host:5432/database")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx masks passwords in parse errors only on a best-effort basis
		// (its own words), and a URL that does not parse is just the kind
		// where it can miss one; so say what is wrong without repeating
		// any of the URL.
		return nil, errors.New("the database URL does not parse (not shown, as it may hold a password); " +
			"want postgres://user:password@host:5432/database?sslmode=disable, with special characters in the password percent-encoded")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tether"
	}
	return cfg, nil
}

// Describe names the server and database for messages: host, port and
// database, never the password.
func Describe(cc *pgx.ConnConfig) string {
	return net.JoinHostPort(cc.Host, fmt.Sprint(cc.Port)) + "/" + cc.Database
}

// ConnectHint says what to check when connecting fails. Past parsing,
// pgx's errors carry no connection string (a failed connection names only
// the user and database), so callers can show err as it is beside the
// hint; masking the password wherever it appears in the text would mangle
// messages and, by doing so, show which word is the password.
func ConnectHint(err error) string {
	var pgErr *pgconn.PgError
	var netErr *net.OpError
	switch {
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return "check the user name and password in the URL, and the server's pg_hba.conf"
		case "3D000": // invalid_catalog_name
			return "the database does not exist: create it, or fix its name in the URL"
		}
		return "the server refused the connection"
	case pgconn.Timeout(err), errors.Is(err, context.DeadlineExceeded):
		return "timed out: check the host and port in the URL, and that no firewall is in the way"
	case errors.As(err, &netErr):
		return "check that PostgreSQL is running and listening at the host and port in the URL"
	}
	return "check the URL, including its sslmode"
}

// LockKey derives a 64-bit advisory lock key for one purpose in one schema.
// Advisory locks are already scoped to a database, so the key only has to
// tell schemas and purposes apart.
//
// Replicas of different releases take these locks against each other, so
// a key must never change: keep this hash, and the purpose strings its
// callers pass ("migrate", "replica tables"), as they are.
func LockKey(purpose, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tether " + purpose + " " + schema))
	return int64(h.Sum64())
}
