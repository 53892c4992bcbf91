package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
)

// TestReplicas runs two servers on one PostgreSQL database, as replicas
// behind a load balancer would run: the agent reaches one, the CLI the
// other. Coordination crosses between them (over PostgreSQL), and so do
// relayed packets (over the relays' mesh), so ssh works both directly and
// with --disable-direct, and the replica the browser reaches serves the
// workspace's web app from the agent on the other.
func TestReplicas(t *testing.T) {
	pg := postgresURL(t)
	a := here.StartServer(t, "--postgres-url", pg)
	b := here.StartServer(t, "--postgres-url", pg)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "app-behind-replica-b")
	}))
	defer app.Close()
	u := here.Admin(t, a.URL)
	tmpl := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(tmpl, []byte(fmt.Sprintf("name: web\napps:\n  - {name: site, url: %q, share: owner}\n", app.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	u.Must("templates", "push", "-f", tmpl)
	token, _ := u.CreateWorkspace("dev", "--template", "web")
	here.StartAgent(t, b.URL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected (to the other replica)", func() bool { return u.AgentStatus("dev") == "connected" })

	if out := u.Must("ssh", "dev", "--", "echo", "across-replicas"); !strings.Contains(out, "across-replicas") {
		t.Errorf("ssh across replicas: %q", out)
	}
	if out := u.Must("ssh", "dev", "--disable-direct", "--", "echo", "through-the-mesh"); !strings.Contains(out, "through-the-mesh") {
		t.Errorf("ssh across replicas through the relays: %q", out)
	}
	out := u.Must("ping", "dev", "-n", "3", "--disable-direct")
	if !strings.Contains(out, "DERP") {
		t.Errorf("ping across replicas through the relays: %q", out)
	}
	code, body := api(t, "GET", a.URL+"/@alice/dev/apps/site/", u.Token(), nil)
	if code != http.StatusOK || string(body) != "app-behind-replica-b" {
		t.Errorf("web app through replica A, agent on B: %d %q", code, body)
	}

	// The health report checks the relay mesh with each other replica.
	code, body = api(t, "GET", a.URL+"/api/v2/debug/health?force", u.Token(), nil)
	var rep tether.HealthReport
	if err := json.Unmarshal(body, &rep); code != http.StatusOK || err != nil {
		t.Fatalf("health: %d %s (%v)", code, body, err)
	}
	var replicas *tether.HealthCheck
	for i := range rep.Checks {
		if rep.Checks[i].Name == "replicas" {
			replicas = &rep.Checks[i]
		}
	}
	if replicas == nil || replicas.Severity != tether.SeverityOK || !strings.Contains(replicas.Message, "1 other replica;") {
		t.Errorf("health report's replicas check: %+v", replicas)
	}
}

// TestReplicasHealthNamesAnUnreachableRelay: when one replica's relay URL
// cannot be reached, the others' health report says so and what to check.
func TestReplicasHealthNamesAnUnreachableRelay(t *testing.T) {
	pg := postgresURL(t)
	a := here.StartServer(t, "--postgres-url", pg)
	here.StartServer(t, "--postgres-url", pg, "--derp-server-relay-url", "http://127.0.0.1:1")
	u := here.Admin(t, a.URL)
	var check tether.HealthCheck
	harness.WaitFor(t, harness.StatusTimeout, "the replicas check to see the other replica", func() bool {
		code, body := api(t, "GET", a.URL+"/api/v2/debug/health?force", u.Token(), nil)
		var rep tether.HealthReport
		if code != http.StatusOK || json.Unmarshal(body, &rep) != nil {
			return false
		}
		for _, c := range rep.Checks {
			if c.Name == "replicas" {
				check = c
			}
		}
		return check.Message != "" && check.Message != "no other replica is running"
	})
	if check.Severity != tether.SeverityWarning || !strings.Contains(check.Message, "http://127.0.0.1:1") ||
		!strings.Contains(check.Message, "--derp-server-relay-url") {
		t.Errorf("replicas check with an unreachable relay: %+v", check)
	}
}

// TestDuplicateAgentAcrossReplicas: the second agent reaches another
// replica than the first, which cannot ask the first whether it is alive;
// it is refused too (a dead connection there ends within the heartbeat).
func TestDuplicateAgentAcrossReplicas(t *testing.T) {
	pg := postgresURL(t)
	a := here.StartServer(t, "--postgres-url", pg)
	b := here.StartServer(t, "--postgres-url", pg)
	u := here.Admin(t, a.URL)
	token, _ := u.CreateWorkspace("dev")
	startMarkedAgent(t, "agent-on-a", a.URL, token, "a")
	harness.WaitFor(t, harness.StatusTimeout, "the first agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	onB := startMarkedAgent(t, "agent-on-b", b.URL, token, "b")
	harness.WaitFor(t, harness.StatusTimeout, "the agent on replica B to be refused", func() bool {
		return strings.Contains(onB.Output(), refusedLine) && strings.Contains(onB.Output(), "through another replica")
	})
	if !strings.Contains(b.Output(), "connected through another replica") {
		t.Errorf("replica B does not log the refusal:\n%s", b.Output())
	}
	if m := sshMarker(t, u); m != "a" {
		t.Errorf("ssh reached agent %q, want the first one", m)
	}
}
