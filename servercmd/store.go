package servercmd

import (
	"context"
	"fmt"
	"net/url"
	"os"

	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/postgres"
	"github.com/tetherdev/tether/store/sqlite"
)

// openStore opens PostgreSQL when --postgres-url is set, else the embedded
// SQLite database in the data directory (created if needed). It returns
// the store and a description for the log that never includes a password.
func openStore(ctx context.Context, s Settings) (store.Store, string, error) {
	if s.PostgresURL != "" {
		db, err := postgres.Open(ctx, s.PostgresURL)
		if err != nil {
			return nil, "", fmt.Errorf("open --postgres-url: %w", err)
		}
		return db, "postgres " + redactURL(s.PostgresURL), nil
	}
	if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create --data-dir: %w", err)
	}
	db, err := sqlite.Open(ctx, s.DataDir)
	if err != nil {
		return nil, "", fmt.Errorf("open store: %w", err)
	}
	return db, "sqlite in " + s.DataDir, nil
}

// redactURL is u without its password (and without a query, which may
// carry one too); a URL that does not parse is shown as "(unparsable)".
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable)"
	}
	if p.User != nil {
		p.User = url.User(p.User.Username())
	}
	p.RawQuery = ""
	return p.String()
}
