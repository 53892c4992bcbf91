package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmoke runs the bench command end to end with tiny windows, so that it
// cannot rot: a real server, agent and CLI, the library pairs in one and in
// two processes, the coordinator child. It checks that every part measured
// something and that the results were saved, never how fast anything was.
// The NAT part is left to its own benchmark (BenchmarkNAT) and to the NAT
// lab tests of package e2e: it needs root and takes a minute.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the product (-short)")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	code := run([]string{
		"-parts", "tcp,library,firstbyte,speedtest,portforward,ssh,latency,sshbulk,sshload,wsproxy,webterm,coord",
		"-duration", "100ms", "-warm", "100ms", "-runs", "1",
		"-rtt-count", "20", "-ssh-runs", "2", "-latency-runs", "1", "-first-byte-runs", "1", "-sshbulk-bytes", "2000000",
		"-coord-sizes", "10", "-coord-updates", "20", "-coord-rate", "200",
		"-sshload-agents", "2", "-sshload-concurrency", "4", "-sshload-sessions", "8",
		"-sshload-lines", "500", "-sshload-freeze", "300ms",
		"-wsproxy-sessions", "3", "-wsproxy-keys", "3", "-webterm-keys", "3",
		"-timeout", "4m",
		"-results", dir,
	}, &out)
	table := out.String()
	if code != 0 {
		t.Fatalf("bench exited with %d:\n%s", code, table)
	}
	for _, row := range []string{
		"plain TCP loopback", "library ceiling direct", "library 2 processes DERP",
		"RTT p50 library 2 processes direct", "fresh tunnel pair first byte max",
		"speedtest direct", "speedtest DERP", "port-forward direct", "port-forward DERP",
		"RTT p50 forwarded direct", "ssh -- true p99", "coordinator 10 peers fan-out p99",
		"ssh load: lines lost", "ssh load, agents stopped: lines lost", "tether ssh bulk down",
		"far: ssh --disable-direct -- true, relayed RTT 400 ms, round trips",
		"far: ssh -- echo direct, first byte, server RTT 200 ms, round trips",
		"web terminal echo p50 via the workspace proxy", "web terminals at once on the proxy, typing as people: echo p99",
		"web terminals at once on the proxy, all typing every 100 ms: echo p99", "workspace proxy memory, every terminal open",
		"web terminal echo p50 direct (WebRTC)", "web terminal echo p99 direct vs relayed, no delay",
	} {
		if !strings.Contains(table, row) {
			t.Errorf("table lacks %q:\n%s", row, table)
		}
	}
	// With OpenSSH's clients (and its sshd, which CI installs), sshbulk
	// measures them too.
	for _, tool := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			continue
		}
		label := map[string]string{"ssh": "OpenSSH via config-ssh down", "scp": "scp via config-ssh down", "sftp": "sftp via config-ssh up"}[tool]
		if !strings.Contains(table, label) {
			t.Errorf("table lacks %q:\n%s", label, table)
		}
	}
	saved, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(saved) != 1 {
		t.Fatalf("saved results = %v, %v; want one JSON file", saved, err)
	}
	rec, err := loadRecord(saved[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Measures) < 20 || len(rec.Failed) > 0 {
		t.Errorf("saved %d measures, failed parts %v", len(rec.Measures), rec.Failed)
	}
	// Not a speed: the ssh load test's goals are correctness (no output
	// lost, no session hung), which holds at any size.
	for _, r := range rec.Rows {
		if strings.HasPrefix(r.Measure, "sshload/") && r.Goal != "" && r.Result != "PASS" {
			t.Errorf("%s: %s (%s)", r.Label, r.Result, r.Note)
		}
	}
	if _, err := os.Stat(strings.TrimSuffix(saved[0], ".json") + ".txt"); err != nil {
		t.Errorf("no benchstat file: %v", err)
	}
}
