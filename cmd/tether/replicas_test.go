package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplicas runs two servers on one PostgreSQL database, as replicas
// behind a load balancer would run: the agent reaches one, the CLI the
// other. Coordination crosses between them (over PostgreSQL), and so do
// relayed packets (over the relays' mesh), so ssh works both directly and
// with --disable-direct, and the replica the browser reaches serves the
// workspace's web app from the agent on the other.
func TestReplicas(t *testing.T) {
	pg := postgresURL(t)
	a := startServer(t, "--postgres-url", pg)
	b := startServer(t, "--postgres-url", pg)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "app-behind-replica-b")
	}))
	defer app.Close()
	u := admin(t, a)
	tmpl := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(tmpl, []byte(fmt.Sprintf("name: web\napps:\n  - {name: site, url: %q, share: owner}\n", app.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	u.must("templates", "push", "-f", tmpl)
	token, _ := u.createWorkspace("dev", "--template", "web")
	startAgent(t, b.url, token)
	waitFor(t, statusTimeout, "agent connected (to the other replica)", func() bool { return u.agentStatus("dev") == "connected" })

	if out := u.must("ssh", "dev", "--", "echo", "across-replicas"); !strings.Contains(out, "across-replicas") {
		t.Errorf("ssh across replicas: %q", out)
	}
	if out := u.must("ssh", "dev", "--disable-direct", "--", "echo", "through-the-mesh"); !strings.Contains(out, "through-the-mesh") {
		t.Errorf("ssh across replicas through the relays: %q", out)
	}
	out := u.must("ping", "dev", "-n", "3", "--disable-direct")
	if !strings.Contains(out, "DERP") {
		t.Errorf("ping across replicas through the relays: %q", out)
	}
	code, body := api(t, "GET", a.url+"/@alice/dev/apps/site/", u.token(), nil)
	if code != http.StatusOK || string(body) != "app-behind-replica-b" {
		t.Errorf("web app through replica A, agent on B: %d %q", code, body)
	}
}
