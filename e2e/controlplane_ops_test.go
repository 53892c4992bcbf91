package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

// What operators get beside the access URL: metrics, the profiler,
// liveness, logs a machine can read.

var (
	promURLRE  = regexp.MustCompile(`msg="serving Prometheus metrics" url=(\S+)`)
	pprofURLRE = regexp.MustCompile(`msg="serving the Go profiler" url=(\S+)`)
)

// urlFromLog finds the URL a process logged for one of its listeners.
func urlFromLog(t *testing.T, p *harness.Proc, re *regexp.Regexp) string {
	t.Helper()
	var url string
	harness.WaitFor(t, harness.StartTimeout, p.Name+" logs "+re.String(), func() bool {
		if m := re.FindStringSubmatch(p.Output()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

// scrape reads url's metrics.
func scrape(t *testing.T, url string) prometheus.Gatherer {
	t.Helper()
	code, body := api(t, "GET", url, "", nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	g, err := metricstest.ParseText(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not Prometheus' text format: %v", url, err)
	}
	return g
}

// metric is a series' value in g; 0 when absent.
func metric(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, _, err := metricstest.Value(g, name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetricsFollowATunnel: the server's and the agent's metrics move as
// a CLI opens a tunnel to a workspace, holds a session, and leaves.
func TestMetricsFollowATunnel(t *testing.T) {
	srv := here.StartServer(t, "--prometheus-address", "127.0.0.1:0", "--pprof-address", "127.0.0.1:0")
	d := harness.StartDeployment(t, srv, harness.DeploymentOptions{AgentEnv: []string{"TETHER_AGENT_PROMETHEUS_ADDRESS=127.0.0.1:0"}})
	serverURL, agentURL := urlFromLog(t, srv.Proc, promURLRE), urlFromLog(t, d.Agent, promURLRE)

	const coordinate = "GET /api/v2/workspaces/{owner}/{name}/coordinate"
	before := scrape(t, serverURL)
	agentBefore := scrape(t, agentURL)
	if v := metric(t, before, "tether_agents_connected"); v != 1 {
		t.Errorf("tether_agents_connected = %v, want 1", v)
	}
	if v := metric(t, before, "tether_coordinator_peers", "kind", "agent"); v != 1 {
		t.Errorf("tether_coordinator_peers{kind=agent} = %v, want 1", v)
	}
	if v := metric(t, before, "tether_store_query_duration_seconds", "method", "WorkspaceByAgentTokenHash"); v == 0 {
		t.Error("the agent's sign-in made no store query that was measured")
	}

	// A session held open: the gauges show it while it lasts.
	ssh := d.User.Start("ssh", "ssh", d.Workspace, "--", "echo ready; exec sleep 60")
	ssh.WaitLine(regexp.MustCompile(`^ready$`))
	during := scrape(t, serverURL)
	if v := metric(t, during, "tether_sessions", "kind", "tunnel"); v != 1 {
		t.Errorf("tether_sessions{kind=tunnel} during ssh = %v, want 1", v)
	}
	if v := metric(t, during, "tether_coordinator_peers", "kind", "client"); v < 1 {
		t.Errorf("tether_coordinator_peers{kind=client} during ssh = %v, want the CLI", v)
	}
	agentDuring := scrape(t, agentURL)
	if v := metric(t, agentDuring, "tether_agent_sessions", "kind", "ssh"); v != 1 {
		t.Errorf("tether_agent_sessions{kind=ssh} during ssh = %v, want 1", v)
	}
	direct, derp := metric(t, agentDuring, "tether_agent_peers", "path", "direct"), metric(t, agentDuring, "tether_agent_peers", "path", "derp")
	if direct+derp < 1 {
		t.Errorf("tether_agent_peers: direct %v, derp %v, want the CLI on one path", direct, derp)
	}
	if n, _ := metricstest.Series(agentDuring, "tether_agent_peer_path"); n < 1 {
		t.Errorf("tether_agent_peer_path: no peer")
	}
	ssh.Cmd.Process.Signal(syscall.SIGTERM)
	<-ssh.Done()

	// Once it has gone, the gauges drop and the counters keep what passed.
	harness.WaitFor(t, harness.StatusTimeout, "the tunnel's session to end on both sides", func() bool {
		s, a := scrape(t, serverURL), scrape(t, agentURL)
		return metric(t, s, "tether_sessions", "kind", "tunnel") == 0 && metric(t, a, "tether_agent_sessions", "kind", "ssh") == 0
	})
	after, agentAfter := scrape(t, serverURL), scrape(t, agentURL)
	moved := []struct {
		name   string
		g0, g1 prometheus.Gatherer
		labels []string
	}{
		{"tether_http_requests_total", before, after, []string{"route", coordinate, "code", "101"}},
		{"tether_http_request_duration_seconds", before, after, []string{"route", coordinate}},
		{"tether_coordinator_updates_sent_total", before, after, nil},
		{"tether_derp_accepts_total", before, after, nil},
		{"tether_derp_received_packets_total", before, after, nil},
		{"tether_agent_sessions_total", agentBefore, agentAfter, []string{"kind", "ssh"}},
	}
	for _, m := range moved {
		if v0, v1 := metric(t, m.g0, m.name, m.labels...), metric(t, m.g1, m.name, m.labels...); v1 <= v0 {
			t.Errorf("%s%q did not move: %v before the tunnel, %v after", m.name, m.labels, v0, v1)
		}
	}

	// Every metric of ours is in the README's tables.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []prometheus.Gatherer{after, agentAfter} {
		families, _ := g.Gather()
		for _, f := range families {
			if name := f.GetName(); strings.HasPrefix(name, "tether_") && !bytes.Contains(readme, []byte("`"+name+"`")) {
				t.Errorf("metric %s is not documented in README.md's Metrics section", name)
			}
		}
	}

	// The profiler answers on its own address, and neither it nor the
	// metrics are on the access URL.
	code, body := api(t, "GET", urlFromLog(t, srv.Proc, pprofURLRE)+"goroutine?debug=1", "", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile")) {
		t.Errorf("pprof: %d %.200s", code, body)
	}
	for _, p := range []string{"/metrics", "/debug/pprof/"} {
		if code, body := api(t, "GET", srv.URL+p, "", nil); code != http.StatusNotFound {
			t.Errorf("GET %s on the access URL: %d %.200s, want 404", p, code, body)
		}
	}
	if code, body := api(t, "GET", srv.URL+"/healthz", "", nil); code != http.StatusOK || string(body) != "ok\n" {
		t.Errorf("GET /healthz: %d %q", code, body)
	}
}

// TestJSONLogs: with --log-format json, every line the server and an
// agent write to stderr is a JSON object, the libraries' included, and
// none repeats a key.
func TestJSONLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*harness.CommandTimeout)
	defer cancel()
	server := here.Cmd(ctx, nil, "server", "--http-address", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--derp-server-stun-addresses", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug",
		"--prometheus-address", "127.0.0.1:0")
	var serverLog, agentLog bytes.Buffer // read once their process has exited
	server.Stderr = &serverLog
	stdout, err := server.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		server.Process.Kill()
		server.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var url string
	for sc.Scan() {
		if m := harness.ListeningRE.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		server.Process.Kill()
		server.Wait()
		t.Fatalf("the server did not start:\n%s", serverLog.String())
	}
	go func() { // drain stdout so that the server is never blocked on it
		for sc.Scan() {
		}
	}()

	// An agent in JSON too, and a tunnel to it, so that every part logs.
	u := here.NewUser(t)
	u.LoginFirstAdmin(url)
	token, agentURL := u.CreateWorkspace("dev")
	agent := here.Cmd(ctx, []string{"TETHER_AGENT_TOKEN=" + token, "TETHER_AGENT_LOG_FORMAT=json"}, "agent", "--url", agentURL, "--log-level", "debug")
	agent.Stderr = &agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		agent.Process.Kill()
		agent.Wait()
	}()
	harness.WaitFor(t, harness.StatusTimeout, "the agent connected", func() bool { return u.AgentStatus("dev") == "connected" })
	u.Must("ssh", "dev", "--", "true")
	api(t, "GET", url+"/derp/probe", "", nil)

	for _, p := range []struct {
		name string
		cmd  *exec.Cmd
		log  *bytes.Buffer
	}{{"agent", agent, &agentLog}, {"server", server, &serverLog}} {
		p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("%s exited with %v", p.name, err)
		}
		checkJSONLines(t, p.name, p.log.String())
	}
	if n := strings.Count(serverLog.String(), "STUN server listening"); n != 1 {
		t.Errorf("the STUN server's start logged %d times, want once:\n%s", n, serverLog.String())
	}
}

// checkJSONLines checks that every line of out is a JSON object with no
// key twice, and that there are lines at debug level (the libraries').
func checkJSONLines(t *testing.T, name, out string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	debug := 0
	for _, line := range lines {
		keys, err := objectKeys(json.NewDecoder(strings.NewReader(line)))
		if err != nil {
			t.Errorf("%s: not a JSON object: %q: %v", name, line, err)
			continue
		}
		for k, n := range keys {
			if n > 1 {
				t.Errorf("%s: key %q %d times in %s", name, k, n, line)
			}
		}
		if strings.Contains(line, `"level":"DEBUG"`) {
			debug++
		}
	}
	if debug == 0 {
		t.Errorf("%s: no debug line in %d lines:\n%s", name, len(lines), out)
	}
}

// objectKeys reads one JSON object from dec and counts its top-level keys.
func objectKeys(dec *json.Decoder) (map[string]int, error) {
	keys := map[string]int{}
	var obj map[string]json.RawMessage
	// Decoding into a map keeps the last of repeated keys; count them by
	// reading the tokens.
	raw := json.RawMessage{}
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	tok := json.NewDecoder(bytes.NewReader(raw))
	tok.Token() // {
	for tok.More() {
		k, err := tok.Token()
		if err != nil {
			return nil, err
		}
		keys[k.(string)]++
		var skip json.RawMessage
		if err := tok.Decode(&skip); err != nil {
			return nil, err
		}
	}
	if dec.More() {
		return nil, errTrailing
	}
	return keys, nil
}

var errTrailing = errors.New("more after the JSON object")
