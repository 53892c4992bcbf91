package e2e

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

// An API token made with `tether tokens create` is printed once, works for
// another CLI (TETHER_SESSION_TOKEN) and for the API as a bearer, is listed
// with its name and when it was used, and is refused once deleted; a tunnel
// opened with it ends when it is deleted.
func TestAPITokensCLI(t *testing.T) {
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	token, agentURL := adm.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return adm.AgentStatus("dev") == "connected" })

	res := adm.Run("tokens", "create", "--name", "ci", "--lifetime", "7d")
	secret := strings.TrimSpace(res.Stdout)
	if res.Code != 0 || !strings.HasPrefix(secret, "tether_token_") || strings.Contains(secret, "\n") || !strings.Contains(res.Stderr, "shown only this once") {
		t.Fatalf("tokens create: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}

	ci := here.NewUser(t)
	ci.Env = append(ci.Env, "TETHER_URL="+srv.URL, "TETHER_SESSION_TOKEN="+secret)
	if ws := ci.Workspaces(); len(ws) != 1 || ws[0].Name != "dev" {
		t.Fatalf("list with the token: %+v", ws)
	}
	if code, body := api(t, "GET", srv.URL+"/api/v2/users/me", "", nil, "Authorization", "Bearer "+secret); code != http.StatusOK || !strings.Contains(string(body), `"alice"`) {
		t.Fatalf("the API with the token as a bearer: %d %s", code, body)
	}
	if stderr := ci.Fails("tokens", "create"); !strings.Contains(stderr, "cannot create tokens") {
		t.Errorf("a token creating a token: %q", stderr)
	}
	if out := adm.Must("tokens", "ls"); !regexp.MustCompile(`(?m)^ci\s+\S+\s+\d{4}-\d\d-\d\d\s+now\s+\d{4}-`).MatchString(out) {
		t.Errorf("tokens ls does not show ci, used now:\n%s", out)
	}

	ssh := here.Start(t, "ssh", ci.Env, "ssh", "dev", "--", "echo ready; sleep 600")
	ssh.WaitLine(regexp.MustCompile(`^ready$`))
	if out := adm.Must("tokens", "delete", "ci"); !strings.Contains(out, "Deleted API token ci") {
		t.Errorf("tokens delete: %q", out)
	}
	awaitExit(t, ssh, "API token it was opened with was deleted")
	if code, body := api(t, "GET", srv.URL+"/api/v2/users/me", secret, nil); code != http.StatusUnauthorized {
		t.Errorf("the deleted token: %d %s", code, body)
	}
	if stderr := adm.Fails("tokens", "delete", "ci"); !strings.Contains(stderr, "no token ci") {
		t.Errorf("deleting it again: %q", stderr)
	}
}
