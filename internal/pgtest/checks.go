package pgtest

import (
	"context"
	"io"
	"net/url"
	"strings"
	"testing"
)

// An Opener starts the code under test on the database at dbURL, as
// store/postgres.Open and replica.Start do, for the checks below that every
// user of a --postgres-url must pass.
type Opener func(ctx context.Context, dbURL string) (io.Closer, error)

// CheckWrongPassword opens the test database with a wrong password and
// checks that the error names the host and says to check the password,
// without repeating it. It skips the test if the server lets the wrong
// password in (trust authentication).
func CheckWrongPassword(t *testing.T, open Opener) {
	t.Helper()
	u, err := url.Parse(BaseURL(t))
	if err != nil {
		t.Fatalf("%s must be a postgres:// URL", URLEnv)
	}
	secret := "wrong-" + RandomHex(8)
	u.User = url.UserPassword(u.User.Username(), secret)
	c, err := open(Context(t), u.String())
	if err == nil {
		c.Close()
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

// CheckBadURLs opens URLs that are empty, do not parse or lead nowhere, and
// checks that each error says what is wrong, names the host when it can,
// and never repeats the password. It needs no database: none of these
// URLs reaches one.
func CheckBadURLs(t *testing.T, open Opener) {
	t.Helper()
	const secret = "s3cret-pw-d0nt-show"
	closedAddr := ClosedAddr(t)
	tests := []struct {
		name string
		url  string
		want []string // each in the error
	}{
		{"empty", "", []string{"URL is empty"}},
		{"bad port", "postgres://tether:" + secret + "@127.0.0.1:notaport/tether", []string{"does not parse"}},
		{"bad sslmode", "postgres://tether:" + secret + "@127.0.0.1/tether?sslmode=bogus", []string{"does not parse"}},
		{"bad escape in password", "postgres://tether:" + secret + "%zz@127.0.0.1/tether", []string{"does not parse"}},
		{"nothing listening", "postgres://tether:" + secret + "@" + closedAddr + "/tether?sslmode=disable",
			[]string{"check that PostgreSQL is running", closedAddr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := open(Context(t), tt.url)
			if err == nil {
				c.Close()
				t.Fatal("opened a bad URL")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error repeats the password: %v", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("got %v, want it to contain %q", err, want)
				}
			}
		})
	}
}
