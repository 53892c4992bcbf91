package tether_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection keeps the architecture's layers apart: what runs in
// a workspace or on a laptop never links the server or its store, the
// server never links the agent, and no binary links the testing package.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/tetherdev/tether"
	tests := []struct {
		pkg       string
		forbidden []string
	}{
		{mod + "/agent", []string{mod + "/server", mod + "/store", mod + "/servercmd"}},
		{mod + "/cli", []string{mod + "/server", mod + "/store", mod + "/servercmd"}},
		{mod + "/client", []string{mod + "/server", mod + "/store", mod + "/coordinator"}},
		{mod + "/tunnel", []string{mod + "/server", mod + "/store", mod + "/agent", mod + "/cli"}},
		{mod + "/coordinator/coordclient", []string{mod + "/server", mod + "/store"}},
		// The control plane links no workspace code (PTYs, user shells):
		// the web terminal speaks to the agent through ptyproto.
		{mod + "/server/...", []string{mod + "/agent"}},
		{mod + "/ptyproto", []string{mod + "/agent", mod + "/server"}},
		// `tether ssh` runs commands through execproto without linking
		// the agent's process code.
		{mod + "/execproto", []string{mod + "/agent", mod + "/server", mod + "/cli"}},
		// The relay is infrastructure any server can run (a replica, or one
		// without a database): it asks who to admit through an interface
		// and is told which relays to mesh with.
		{mod + "/relay", []string{mod + "/server", mod + "/store", mod + "/servercmd", mod + "/coordinator", mod + "/replica"}},
		// So is the UDP relay: it reaches the coordinator through a
		// function the command gives it.
		{mod + "/peerrelay", []string{mod + "/server", mod + "/store", mod + "/servercmd", mod + "/coordinator", mod + "/replica"}},
		// The command wires the server; the server never reaches back.
		{mod + "/server", []string{mod + "/servercmd", mod + "/wsproxycmd"}},
		// A workspace proxy has no database: it links neither store
		// implementation nor the replicas' PostgreSQL bus.
		{mod + "/wsproxycmd", []string{mod + "/store/sqlite", mod + "/store/postgres", mod + "/replica", mod + "/servercmd"}},
		// Proxies check hand-off tokens without linking the server.
		{mod + "/handoff", []string{mod + "/server", mod + "/store"}},
		{mod, []string{mod + "/"}}, // the shared types are a leaf
		// Every process's metrics and logs: nothing of the parts they serve.
		{mod + "/internal/metrics", []string{mod + "/server", mod + "/store", mod + "/agent", mod + "/coordinator", mod + "/relay", mod + "/cli"}},
		{mod + "/internal/logging", []string{mod + "/server", mod + "/store", mod + "/agent", mod + "/coordinator", mod + "/relay", mod + "/cli"}},
		{mod + "/cmd/tether", []string{"testing", mod + "/internal/natlab"}},
		// The end-to-end harness is shared with bench, a command: test-only
		// code (natlab, chromedp) stays in the e2e package's tests.
		{mod + "/internal/harness", []string{"testing", mod + "/internal/natlab", mod + "/internal/pgtest", "github.com/chromedp/"}},
		{mod + "/bench", []string{"testing", mod + "/internal/natlab", mod + "/internal/pgtest"}},
	}
	for _, tc := range tests {
		t.Run(tc.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", tc.pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tc.forbidden {
					if forbids(f, dep) {
						t.Errorf("%s imports %s", tc.pkg, dep)
					}
				}
			}
		})
	}
}

// forbids reports whether the rule f covers package dep: f itself and its
// subpackages, or, when f ends in "/", everything under it.
func forbids(f, dep string) bool {
	if strings.HasSuffix(f, "/") {
		return strings.HasPrefix(dep, f)
	}
	return dep == f || strings.HasPrefix(dep, f+"/")
}

func TestForbids(t *testing.T) {
	for _, tc := range []struct {
		f, dep string
		want   bool
	}{
		{"a/server", "a/server", true},
		{"a/server", "a/server/agentnet", true},
		{"a/server", "a/serve", false},
		{"a/", "a/store", true},
		{"testing", "testing/iotest", true},
		{"testing", "testingx", false},
	} {
		if got := forbids(tc.f, tc.dep); got != tc.want {
			t.Errorf("forbids(%q, %q) = %v", tc.f, tc.dep, got)
		}
	}
}
