package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
)

// TestListCommandsText runs every list command against a server that
// answers with fixed lists and compares the tables they print with
// testdata/output/*.txt: the text people read (and scripts grep) stays
// as it is. After a deliberate change, run with -update and review the
// diff.
func TestListCommandsText(t *testing.T) {
	// The tables show times in the local zone: pin it.
	local := time.Local
	time.Local = time.UTC
	t.Cleanup(func() { time.Local = local })

	created := time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)
	seen := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC) // long ago: ago prints the date
	exit3 := 3
	apps := []tether.App{{Name: "web", URL: "http://127.0.0.1:8080"}, {Name: "docs", URL: "http://127.0.0.1:8081"}}
	answers := map[string]any{
		"/api/v2/workspaces": []tether.Workspace{
			{Name: "dev", Owner: "alice", Template: "python-dev", AgentStatus: tether.AgentConnected, LastSeen: &seen,
				Connection:    &tether.WorkspaceConnection{Path: tether.PathDirect, Endpoint: "203.0.113.7:41641", Peers: 1},
				StartupScript: &tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: &exit3}},
			{Name: "scratch", Owner: "bob", AgentStatus: tether.AgentDisconnected,
				Connection: &tether.WorkspaceConnection{Path: tether.PathDERP, DERPRegion: "fra", Peers: 2}},
		},
		"/api/v2/users": []tether.User{
			{Username: "alice", Email: "alice@example.com", Role: tether.RoleAdmin, Status: tether.UserActive, CreatedAt: created},
			{Username: "bob", Email: "bob@example.com", Role: tether.RoleMember, Status: tether.UserSuspended, CreatedAt: seen},
		},
		"/api/v2/templates": []tether.Template{
			{Name: "python-dev", AgentURL: "https://tether.internal.example.com", Apps: apps},
			{Name: "bare"},
		},
		"/api/v2/users/me/tokens": []tether.APIToken{
			{ID: uuid.MustParse("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"), Name: "ci", CreatedAt: created, LastUsedAt: &seen,
				ExpiresAt: created.Add(24 * time.Hour)},
			{ID: uuid.MustParse("6b5c4d3e-2f10-4b0c-9d8e-7f6a5b4c3d2e"), Name: "deploy", CreatedAt: created,
				ExpiresAt: time.Date(2126, 1, 1, 8, 0, 0, 0, time.UTC)},
		},
		"/api/v2/workspaceproxies": []tether.WorkspaceProxy{
			{Name: "eu", URL: "https://eu.example.com", RegionID: 10001, Healthy: true, Version: "v1.4.0", LastHeartbeat: &seen},
			{Name: "asia", RegionID: 10002},
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		v, ok := answers[req.URL.Path]
		if !ok || req.Method != http.MethodGet {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		golden string
		args   []string
	}{
		{"list.txt", []string{"list"}},
		{"users-list.txt", []string{"users", "list"}},
		{"templates-list.txt", []string{"templates", "list"}},
		{"tokens-ls.txt", []string{"tokens", "ls"}},
		{"wsproxy-ls.txt", []string{"wsproxy", "ls"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			args := append(tc.args, "--url", srv.URL, "--session-token", "token", "--config-dir", t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if code := Run(ctx, Root(env), env, args); code != 0 {
				t.Fatalf("tether %s: exit %d: %s", strings.Join(tc.args, " "), code, stderr.String())
			}
			path := filepath.Join("testdata", "output", tc.golden)
			if *update {
				if err := os.WriteFile(path, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("tether %s printed:\n%s\nwant (%s):\n%s", strings.Join(tc.args, " "), got, path, want)
			}
		})
	}
}
