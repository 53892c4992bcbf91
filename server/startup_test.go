package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// setStartupScript stores a startup script result for ws, as its agent's
// report would.
func (f *fixture) setStartupScript(ws store.Workspace, st tether.StartupScriptStatus, output string) {
	f.t.Helper()
	if st.StartedAt.IsZero() {
		st.StartedAt = f.clock.Now()
	}
	if err := f.db.SetStartupScript(context.Background(), ws.ID, tether.StartupScriptResult{StartupScriptStatus: st, Output: output}); err != nil {
		f.t.Fatal(err)
	}
}

func TestStartupScriptReports(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	agentPost := func(body string) (*http.Response, string) {
		return f.do(req{method: "POST", path: "/api/v2/agent/startup-script", body: body,
			header: http.Header{"Content-Type": {"application/json"}, tether.AgentTokenHeader: {f.agentToken}}})
	}
	tests := []struct {
		name    string
		body    string
		want    int
		wantErr string
	}{
		{"running", `{"status":"running","started_at":"2026-03-01T12:00:00Z","output":"step 1\n","log_path":"/home/bob/.local/state/tether/startup-script.log"}`, 204, ""},
		{"failed", `{"status":"failed","exit_code":3,"started_at":"2026-03-01T12:00:00Z","finished_at":"2026-03-01T12:00:05Z","output":"step 1\nboom\n"}`, 204, ""},
		{"unknown status", `{"status":"done","started_at":"2026-03-01T12:00:00Z"}`, 400, "is not running, succeeded, failed or timed_out"},
		{"succeeded with a failure's code", `{"status":"succeeded","exit_code":1,"started_at":"2026-03-01T12:00:00Z","finished_at":"2026-03-01T12:00:05Z"}`, 400, "matching exit code"},
		{"output too long", `{"status":"running","started_at":"2026-03-01T12:00:00Z","output":"` + strings.Repeat("x", tether.MaxStartupScriptOutput+1) + `"}`, 400, "at most 16384 bytes"},
		{"finished before it started", `{"status":"failed","exit_code":1,"started_at":"2026-03-01T12:00:00Z","finished_at":"2026-03-01T11:00:00Z"}`, 400, "out of order"},
		{"no start", `{"status":"running"}`, 400, "out of order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := agentPost(tt.body)
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.wantErr) {
				t.Fatalf("POST %s: %d %s, want %d %q", tt.body, resp.StatusCode, body, tt.want, tt.wantErr)
			}
		})
	}

	// The last good report is what the owner sees: its status in the
	// workspace, its output at its own endpoint.
	ownerToken := f.session(f.owner, time.Hour)
	resp, body := f.do(req{method: "GET", path: "/api/v2/workspaces/me/dev", header: http.Header{tether.SessionTokenHeader: {ownerToken}}})
	var ws tether.Workspace
	if err := json.Unmarshal([]byte(body), &ws); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET workspace: %d %s", resp.StatusCode, body)
	}
	if st := ws.StartupScript; st == nil || st.Status != tether.StartupScriptFailed || *st.ExitCode != 3 || st.FinishedAt == nil {
		t.Fatalf("workspace's startup_script = %+v, want failed with 3", st)
	}
	if strings.Contains(body, "boom") {
		t.Errorf("the workspace (and so every list) carries the output: %s", body)
	}
	resp, body = f.do(req{method: "GET", path: "/api/v2/workspaces/bob/dev/startup-script", header: http.Header{tether.SessionTokenHeader: {ownerToken}}})
	var res tether.StartupScriptResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || resp.StatusCode != 200 || res.Output != "step 1\nboom\n" || res.Status != tether.StartupScriptFailed {
		t.Fatalf("GET startup-script: %d %s", resp.StatusCode, body)
	}

	// A workspace whose agent never ran one says so.
	other, _ := f.addWorkspace(f.owner, "plain", uuid.Nil)
	resp, body = f.do(req{method: "GET", path: "/api/v2/workspaces/bob/" + other.Name + "/startup-script", header: http.Header{tether.SessionTokenHeader: {ownerToken}}})
	if resp.StatusCode != 404 || !strings.Contains(body, "has not run a startup script") {
		t.Errorf("GET startup-script of a workspace without one: %d %s", resp.StatusCode, body)
	}
}

// TestManifestCarriesStartupScript: the agent learns its template's
// startup script and timeout from its manifest.
func TestManifestCarriesStartupScript(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tpl, err := f.db.UpsertTemplate(context.Background(), store.Template{ID: uuid.New(), Name: "scripted",
		StartupScript: "make deps", StartupScriptTimeout: tether.Duration(time.Minute), CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_, token := f.addWorkspace(f.owner, "scripted", tpl.ID)
	resp, body := f.do(req{method: "GET", path: "/api/v2/agent/manifest", header: http.Header{tether.AgentTokenHeader: {token}}})
	var m tether.AgentManifest
	if err := json.Unmarshal([]byte(body), &m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}
	if m.StartupScript != "make deps" || m.StartupScriptTimeout != tether.Duration(time.Minute) {
		t.Errorf("manifest startup script = %q, %s", m.StartupScript, time.Duration(m.StartupScriptTimeout))
	}
}
