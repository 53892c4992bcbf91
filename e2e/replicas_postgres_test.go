package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/pgtest"
)

// postgresURL returns a URL of a fresh, empty schema in the test database
// named by TETHER_TEST_POSTGRES_URL (which .ci/run provides), dropped when
// the test ends. Without that variable the test is skipped, except in CI.
func postgresURL(t *testing.T) string {
	t.Helper()
	dbURL, _ := pgtest.NewSchema(t)
	return dbURL
}

// TestPostgresStore runs the server on PostgreSQL: users, workspaces and
// agent status work as on the embedded store and survive a restart; a bad
// --postgres-url is a clear error that never shows the password. Several
// servers on one database are TestReplicas.
func TestPostgresStore(t *testing.T) {
	pg := postgresURL(t)
	srv := here.StartServer(t, "--postgres-url", pg)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })
	if out := u.Must("ssh", "dev", "--", "echo", "on-postgres"); !strings.Contains(out, "on-postgres") {
		t.Errorf("ssh through a server on PostgreSQL: %q", out)
	}

	// State lives in PostgreSQL: a restart with a fresh data directory
	// keeps the user, the session and the workspace.
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Stop()
	srv = here.StartServerWith(t, harness.ServerOptions{Addr: addr, Args: []string{"--postgres-url", pg}})
	harness.WaitFor(t, harness.StatusTimeout, "agent reconnected", func() bool { return u.AgentStatus("dev") == "connected" })

	// A relay URL other replicas could not use is refused before anything
	// is opened.
	r := u.Run("server", "--postgres-url", pg, "--derp-server-relay-url", "ftp://relay", "--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "disable")
	if r.Code == 0 || !strings.Contains(r.Stderr, "--derp-server-relay-url") || !strings.Contains(r.Stderr, "http://") {
		t.Errorf("server with --derp-server-relay-url ftp://relay: code %d, stderr %q", r.Code, r.Stderr)
	}

	// A wrong password, and a server that is not there.
	bu, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "not-the-password-4711"
	bu.User = url.UserPassword(bu.User.Username(), secret)
	for _, bad := range []string{bu.String(), fmt.Sprintf("postgres://tether:%s@127.0.0.1:1/nothing", secret)} {
		r := u.Run("server", "--postgres-url", bad, "--http-address", "127.0.0.1:0", "--derp-server-stun-addresses", "disable")
		if r.Code == 0 || !strings.Contains(r.Stderr, "postgres-url") || strings.Contains(r.Stderr+r.Stdout, secret) || strings.Contains(r.Stderr, "goroutine") {
			t.Errorf("server with a bad --postgres-url: code %d, stderr %q", r.Code, r.Stderr)
		}
	}
}
