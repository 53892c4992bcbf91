package pgsetup

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestLockKeyIsStable pins the keys that databases in use already hold
// locks under: a change here would let an old replica and a new one
// migrate at the same time.
func TestLockKeyIsStable(t *testing.T) {
	tests := []struct {
		purpose, schema string
	}{
		{"migrate", "public"},
		{"replica tables", "public"},
		{"migrate", "tenant_a"},
	}
	seen := map[int64]string{}
	for _, tt := range tests {
		// FNV-1a, 64-bit, of "tether <purpose> <schema>", as store/postgres
		// and replica have always computed it.
		var want uint64 = 14695981039346656037
		for _, b := range []byte("tether " + tt.purpose + " " + tt.schema) {
			want ^= uint64(b)
			want *= 1099511628211
		}
		got := LockKey(tt.purpose, tt.schema)
		if got != int64(want) {
			t.Errorf("LockKey(%q, %q) = %d; want %d", tt.purpose, tt.schema, got, int64(want))
		}
		if other, ok := seen[got]; ok {
			t.Errorf("LockKey(%q, %q) collides with %s", tt.purpose, tt.schema, other)
		}
		seen[got] = tt.purpose + " " + tt.schema
	}
}

func TestParseConfig(t *testing.T) {
	const secret = "s3cret-pw-d0nt-show"
	tests := []struct {
		name string
		url  string
		want string // in the error; "" for success
	}{
		{"empty", "", "URL is empty"},
		{"bad port", "postgres://tether:" + secret + "@127.0.0.1:notaport/tether", "does not parse"},
		{"bad sslmode", "postgres://tether:" + secret + "@127.0.0.1/tether?sslmode=bogus", "does not parse"},
		{"bad escape in password", "postgres://tether:" + secret + "%zz@127.0.0.1/tether", "does not parse"},
		{"good", "postgres://tether:" + secret + "@db.example:6543/tether?sslmode=disable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig(tt.url)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := Describe(cfg.ConnConfig); got != "db.example:6543/tether" {
					t.Errorf("Describe: %q", got)
				}
				if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != "tether" {
					t.Errorf("application_name %q; want tether", got)
				}
				return
			}
			if err == nil {
				t.Fatal("ParseConfig succeeded")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the password: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want it to contain %q", err, tt.want)
			}
		})
	}
	t.Run("keeps application_name", func(t *testing.T) {
		cfg, err := ParseConfig("postgres://tether@127.0.0.1/tether?application_name=mine")
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.ConnConfig.RuntimeParams["application_name"]; got != "mine" {
			t.Errorf("application_name %q; want mine", got)
		}
	})
}

func TestConnectHint(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // in the hint
	}{
		{"wrong password", &pgconn.PgError{Code: "28P01"}, "password"},
		{"no database", &pgconn.PgError{Code: "3D000"}, "does not exist"},
		{"other refusal", &pgconn.PgError{Code: "53300"}, "refused"},
		{"nothing listening", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, "check that PostgreSQL is running"},
		{"other", errors.New("tls: bad certificate"), "sslmode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ConnectHint(tt.err); !strings.Contains(got, tt.want) {
				t.Errorf("ConnectHint: %q; want it to contain %q", got, tt.want)
			}
		})
	}
}
