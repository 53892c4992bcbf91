package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/speedtest"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the code prints")

// TestJSONOutput renders each command's --output json from fixed values and
// compares it with testdata/output: the shapes the README documents and
// scripts rely on. After a deliberate change, run with -update and review
// the diff.
func TestJSONOutput(t *testing.T) {
	created := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	seen := created.Add(2 * time.Hour)
	ownerID := uuid.MustParse("6f1d0c1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f")
	ws := tether.Workspace{
		ID:          uuid.MustParse("0c7a9d42-1e2f-4a5b-9c8d-7e6f5a4b3c2d"),
		Name:        "dev",
		Owner:       "alice",
		OwnerID:     ownerID,
		Template:    "python-dev",
		AgentStatus: tether.AgentConnected,
		LastSeen:    &seen,
		AgentIP:     "fd7a:115c:a1e0:c7a:9d42:1e2f:4a5b:9c8d",
		Apps: []tether.WorkspaceApp{{
			App: tether.App{Name: "web", URL: "http://127.0.0.1:8080", Share: tether.ShareOwner,
				Healthcheck: &tether.Healthcheck{URL: "http://127.0.0.1:8080/healthz", Interval: tether.Duration(5 * time.Second), Threshold: 3}},
			Health: tether.AppHealthHealthy,
		}},
		CreatedAt:  created,
		Connection: &tether.WorkspaceConnection{Path: tether.PathDirect, Endpoint: "203.0.113.7:41641", Peers: 1},
	}
	startupEnd, exit0 := seen.Add(-time.Minute), 0
	ws.StartupScript = &tether.StartupScriptStatus{Status: tether.StartupScriptSucceeded, ExitCode: &exit0,
		StartedAt: startupEnd.Add(-42 * time.Second), FinishedAt: &startupEnd}
	derpMap := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		900: {RegionID: 900, RegionCode: "tether", RegionName: "Tether", Nodes: []*tailcfg.DERPNode{{Name: "900a", RegionID: 900, HostName: "tether.example.com", STUNPort: 3478}}},
		901: {RegionID: 901, RegionCode: "fra", RegionName: "Frankfurt", Nodes: []*tailcfg.DERPNode{{Name: "901a", RegionID: 901, HostName: "fra.example.com", STUNPort: 3478}}},
	}}

	tests := []struct {
		name  string // the golden file in testdata/output
		write func(*bytes.Buffer) error
	}{
		{"create.json", func(b *bytes.Buffer) error {
			return writeJSON(b, createOutput(tether.CreateWorkspaceResponse{
				Workspace: ws, AgentToken: "agent-token", AgentURL: "https://tether.example.com",
				InstallCommand: "curl -fsSL https://tether.example.com/install.sh | TETHER_AGENT_TOKEN=agent-token sh",
			}))
		}},
		{"list.json", func(b *bytes.Buffer) error {
			offline := tether.Workspace{ID: uuid.MustParse("9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"), Name: "scratch", Owner: "alice",
				OwnerID: ownerID, AgentStatus: tether.AgentDisconnected, CreatedAt: created}
			return writeJSON(b, []tether.Workspace{ws, offline})
		}},
		{"version.json", func(b *bytes.Buffer) error {
			v := versionFrom("v1.4.0", &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
				{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
				{Key: "vcs.revision", Value: "f64eaf1c0ffee0ddba11f00dfacade0123456789"}, {Key: "vcs.time", Value: "2026-12-01T09:30:00Z"},
			}})
			return writeJSON(b, v)
		}},
		{"users-list.json", func(b *bytes.Buffer) error {
			return writeJSON(b, []tether.User{{ID: ownerID, Username: "alice", Email: "alice@example.com",
				Role: tether.RoleAdmin, Status: tether.UserActive, CreatedAt: created}})
		}},
		{"templates-list.json", func(b *bytes.Buffer) error {
			return writeJSON(b, []tether.Template{{ID: uuid.MustParse("3e2d1c0b-a9f8-4e7d-b6c5-a4b3c2d1e0f9"), Name: "python-dev",
				AgentURL: "https://tether.internal.example.com", Apps: []tether.App{ws.Apps[0].App}, CreatedAt: created, UpdatedAt: seen}})
		}},
		{"tokens-create.json", func(b *bytes.Buffer) error {
			return writeJSON(b, tether.CreateAPITokenResponse{APIToken: tether.APIToken{ID: uuid.MustParse("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"),
				Name: "ci", CreatedAt: created, ExpiresAt: created.Add(30 * 24 * time.Hour)}, Token: tether.APITokenPrefix + "secret"})
		}},
		{"tokens-ls.json", func(b *bytes.Buffer) error {
			return writeJSON(b, []tether.APIToken{{ID: uuid.MustParse("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"),
				Name: "ci", CreatedAt: created, LastUsedAt: &seen, ExpiresAt: created.Add(30 * 24 * time.Hour)}})
		}},
		{"ping.jsonl", func(b *bytes.Buffer) error {
			enc := json.NewEncoder(b)
			for _, line := range []tether.PingOutput{
				pingOutput(1, tunnel.PingResult{DERPRegionID: 900, DERPRegionCode: "tether", Latency: 12345 * time.Microsecond}),
				{Seq: 2, Path: tether.PathTimeout},
				pingOutput(3, tunnel.PingResult{Direct: true, Endpoint: "203.0.113.7:41641", Latency: 876 * time.Microsecond}),
			} {
				if err := enc.Encode(line); err != nil {
					return err
				}
			}
			return nil
		}},
		{"speedtest.json", func(b *bytes.Buffer) error {
			res := speedtest.Result{Direction: speedtest.Down, Bytes: 250_000_000, Duration: 2 * time.Second, Intervals: []speedtest.Interval{
				{Start: 0, End: time.Second, Bytes: 100_000_000},
				{Start: time.Second, End: 2 * time.Second, Bytes: 150_000_000},
			}}
			return writeJSON(b, speedtestOutput(res, &tunnel.PingResult{Direct: true, Endpoint: "203.0.113.7:41641", Latency: time.Millisecond}))
		}},
		{"speedtest-relayed.json", func(b *bytes.Buffer) error {
			res := speedtest.Result{Direction: speedtest.Up, Bytes: 16_000_000, Duration: time.Second, Intervals: []speedtest.Interval{
				{Start: 0, End: time.Second, Bytes: 16_000_000},
			}}
			return writeJSON(b, speedtestOutput(res, &tunnel.PingResult{DERPRegionID: 900, DERPRegionCode: "tether", Latency: 20 * time.Millisecond}))
		}},
		{"speedtest-no-pong.json", func(b *bytes.Buffer) error {
			return writeJSON(b, speedtestOutput(speedtest.Result{Direction: speedtest.Down}, nil))
		}},
		{"wsproxy-create.json", func(b *bytes.Buffer) error {
			return writeJSON(b, tether.WorkspaceProxyTokenResponse{
				Proxy: tether.WorkspaceProxy{Name: "eu", DisplayName: "Frankfurt", RegionID: 10000, CreatedAt: created},
				Token: "proxy-token",
			})
		}},
		{"wsproxy-ls.json", func(b *bytes.Buffer) error {
			return writeJSON(b, []tether.WorkspaceProxy{{Name: "eu", DisplayName: "Frankfurt", Icon: "🇩🇪",
				URL: "https://eu.tether.example.com", WildcardURL: "*.apps.eu.tether.example.com", RegionID: 10000,
				Healthy: true, Version: "v1.2.3", LastHeartbeat: &seen, CreatedAt: created}})
		}},
		{"netcheck.json", func(b *bytes.Buffer) error {
			st := &tunnel.Status{
				Endpoints: []netip.AddrPort{netip.MustParseAddrPort("192.168.1.20:41641"), netip.MustParseAddrPort("203.0.113.7:41641")},
				Netcheck: &tunnel.Netcheck{
					UDP: true, IPv4: true, GlobalV4: netip.MustParseAddrPort("203.0.113.7:41641"),
					MappingVariesByDestIP: "false", PreferredDERP: 900,
					DERPLatency: map[int]time.Duration{900: 4200 * time.Microsecond, 901: 31 * time.Millisecond},
				},
			}
			return writeJSON(b, netcheckOutput(tether.ConnectionInfo{DERPMap: derpMap}, st, 900, "false"))
		}},
		{"netcheck-offline.json", func(b *bytes.Buffer) error {
			// No STUN, direct connections blocked: nothing measured.
			offline := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				900: {RegionID: 900, RegionCode: "tether", Nodes: []*tailcfg.DERPNode{{Name: "900a", RegionID: 900, STUNPort: -1}}},
			}}
			st := &tunnel.Status{BlockEndpoints: true, Netcheck: &tunnel.Netcheck{}}
			return writeJSON(b, netcheckOutput(tether.ConnectionInfo{DERPMap: offline, DisableDirect: true}, st, 0, ""))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			if err := tt.write(&got); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "output", tt.name)
			if *update {
				if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cli -run TestJSONOutput -update to write it)", err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s: got\n%s\nwant\n%s\nIf the change is deliberate, update the README's JSON table and run with -update.", golden, got.Bytes(), want)
			}
		})
	}
}

// item is what TestListingCommand lists.
type item struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

func TestListingCommand(t *testing.T) {
	items := []item{{"a", 1}, {"longer name", 22}}
	fetchErr := errors.New("server says no")
	tests := []struct {
		name    string
		args    []string
		items   []item
		err     error  // fetch's
		empty   string // listing.empty
		want    string // stdout
		wantErr string // "" for success
		fetched bool   // whether fetch must run
	}{
		{name: "table", items: items, fetched: true,
			want: "NAME         AGE\na            1\nlonger name  22\n"},
		{name: "json", args: []string{"-o", "json"}, items: items, fetched: true,
			want: "[\n  {\n    \"name\": \"a\",\n    \"age\": 1\n  },\n  {\n    \"name\": \"longer name\",\n    \"age\": 22\n  }\n]\n"},
		{name: "empty table", fetched: true, want: "NAME  AGE\n"},
		{name: "empty with a message", empty: "Nothing yet.", fetched: true, want: "Nothing yet.\n"},
		{name: "empty json with a message", args: []string{"--output", "json"}, items: []item{}, empty: "Nothing yet.",
			fetched: true, want: "[]\n"},
		{name: "bad output", args: []string{"--output", "yaml"}, items: items,
			wantErr: `--output must be text or json, not "yaml"`},
		{name: "fetch fails", err: fetchErr, fetched: true, wantErr: fetchErr.Error()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout bytes.Buffer
			r := &root{env: &Env{Stdout: &stdout}, url: "http://127.0.0.1:1", sessionToken: "token"}
			fetched := false
			var nows []time.Time
			cmd := listingCommand(r, &cobra.Command{Use: "ls", Args: cobra.NoArgs}, listing[item]{
				fetch: func(ctx context.Context, c *client.Client) ([]item, error) {
					fetched = true
					if c.SessionToken != "token" {
						t.Errorf("fetch got a client with token %q", c.SessionToken)
					}
					return tc.items, tc.err
				},
				header: "NAME\tAGE",
				row: func(it item, now time.Time) []string {
					nows = append(nows, now)
					return []string{it.Name, strconv.Itoa(it.Age)}
				},
				empty: tc.empty,
			})
			cmd.SetArgs(tc.args)
			cmd.SetOut(&stdout)
			cmd.SetErr(&bytes.Buffer{})
			cmd.SilenceUsage = true
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if fetched != tc.fetched {
				t.Errorf("fetched = %v, want %v", fetched, tc.fetched)
			}
			if got := stdout.String(); got != tc.want {
				t.Errorf("printed %q, want %q", got, tc.want)
			}
			for _, now := range nows {
				if now != nows[0] {
					t.Errorf("rows were given different times: %v", nows)
					break
				}
			}
		})
	}
}
