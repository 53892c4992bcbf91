package postgres

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tetherdev/tether/store"
)

// Driver errors become the store's sentinels; a full disk is one (a real
// full disk is not something a test can make of a shared server).
func TestMapErr(t *testing.T) {
	tests := []struct {
		err  error
		want error
	}{
		{pgx.ErrNoRows, store.ErrNotFound},
		{&pgconn.PgError{Code: "23505"}, store.ErrConflict},
		{fmt.Errorf("commit: %w", &pgconn.PgError{Code: "53100", Message: "could not extend file: No space left on device"}), store.ErrStorageFull},
	}
	for _, tc := range tests {
		if got := mapErr(tc.err, "op"); !errors.Is(got, tc.want) {
			t.Errorf("mapErr(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	other := &pgconn.PgError{Code: "53300"} // too_many_connections: not a full disk
	if got := mapErr(other, "op"); errors.Is(got, store.ErrStorageFull) || !errors.As(got, new(*pgconn.PgError)) {
		t.Errorf("mapErr(%v) = %v, want it passed through", other, got)
	}
}
