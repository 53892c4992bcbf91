package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

type healthReport struct {
	Healthy  bool   `json:"healthy"`
	Severity string `json:"severity"`
	Checks   []struct {
		Name, Severity, Message string
	} `json:"checks"`
	DERPRegions []struct {
		Code, Severity, Message string
		LatencyMS               *float64 `json:"latency_ms"`
	} `json:"derp_regions"`
}

func (r healthReport) check(name string) (severity, message string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Severity, c.Message
		}
	}
	return "", ""
}

func getHealth(t *testing.T, srv *harness.Server, u *harness.User) healthReport {
	t.Helper()
	code, body := api(t, "GET", srv.URL+"/api/v2/debug/health", u.Token(), nil)
	var rep healthReport
	if code != http.StatusOK || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("health: %d %s", code, body)
	}
	return rep
}

func TestHealth(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	rep := getHealth(t, srv, u)
	if !rep.Healthy || rep.Severity != "ok" {
		t.Errorf("healthy deployment reported %+v", rep)
	}
	for _, name := range []string{"access_url", "websocket", "stun", "store", "derp"} {
		if sev, msg := rep.check(name); sev != "ok" || msg == "" {
			t.Errorf("check %s: %q %q", name, sev, msg)
		}
	}
	if len(rep.DERPRegions) != 1 || rep.DERPRegions[0].Code != "tether" || rep.DERPRegions[0].LatencyMS == nil {
		t.Errorf("relay regions: %+v", rep.DERPRegions)
	}
	code, _ := api(t, "GET", srv.URL+"/api/v2/debug/health", "", nil)
	if code != http.StatusUnauthorized {
		t.Errorf("health without signing in: %d", code)
	}
}

func TestHealthReportsProblems(t *testing.T) {
	// A STUN server that does not exist, and an access URL that points
	// nowhere, are both reported with what to do.
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
	srv := here.StartServerWith(t, harness.ServerOptions{Addr: addr, Args: []string{"--stun-addresses", "127.0.0.1:9", "--access-url", "http://127.0.0.1:9"}})
	srv.URL = "http://" + addr
	u := here.NewUser(t)
	u.Must("login", srv.URL, "--first-user-username", "alice", "--first-user-email", "alice@example.com", "--first-user-password", "correct-horse")
	rep := getHealth(t, srv, u)
	if rep.Healthy || rep.Severity != "error" {
		t.Errorf("broken deployment reported healthy: %+v", rep)
	}
	if sev, msg := rep.check("access_url"); sev != "error" || !strings.Contains(msg, "--access-url") {
		t.Errorf("access_url: %q %q", sev, msg)
	}
	if sev, msg := rep.check("stun"); sev != "error" || !strings.Contains(msg, "UDP") {
		t.Errorf("stun: %q %q", sev, msg)
	}
}
