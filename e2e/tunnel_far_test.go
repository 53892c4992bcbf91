package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/delayproxy"
	"github.com/tetherdev/tether/internal/harness"
)

// farDelay is what the proxy in front of the server adds each way in
// TestSSHFarFromServer: modest, so that the test stays quick, but far
// more than anything on loopback, so that every race between the paths
// through the server (coordination, relay, API) is run the slow way.
const farDelay = 50 * time.Millisecond

// startFarWorkspace starts a deployment whose CLI and agent reach the
// server only through a delay proxy (its access URL is the proxy's), and
// then sets the proxy's delay to farDelay.
func startFarWorkspace(t *testing.T) (*harness.Deployment, *delayproxy.Proxy) {
	t.Helper()
	serverAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	proxy, err := delayproxy.Listen("127.0.0.1:0", serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	srv := here.StartServerWith(t, harness.ServerOptions{
		Addr: serverAddr,
		Args: []string{"--access-url", "http://" + proxy.Addr()},
	})
	dep := harness.StartDeployment(t, srv, harness.DeploymentOptions{
		// Bash sources ~/.bashrc for commands sshd runs at the first
		// shell level, and a developer's may take seconds: not what
		// this test is about.
		AgentEnv: []string{"SHLVL=1"},
	})
	proxy.SetDelay(farDelay)
	return dep, proxy
}

// TestSSHFarFromServer: with the server far away (the API, coordination and
// the relay behind a delay), `tether ssh` still delivers all output, the
// exit status and the environment, relayed and direct; a stale saved
// connection info is noticed and replaced; and after the agent restarts
// (a new key: the peer moved) the next command reaches the new one.
func TestSSHFarFromServer(t *testing.T) {
	dep, proxy := startFarWorkspace(t)
	u := dep.User
	u.Env = append(u.Env, "LANG=C.UTF-8", "COLORTERM=truecolor")
	for _, path := range []struct {
		name  string
		flags []string
	}{
		{"relayed", []string{"--disable-direct"}},
		{"direct", nil},
	} {
		t.Run(path.name, func(t *testing.T) {
			ssh := func(cmd ...string) []string {
				return append(append([]string{"ssh"}, path.flags...), append([]string{dep.Workspace, "--"}, cmd...)...)
			}
			r := u.Run(ssh("echo out; echo err >&2; exit 3")...)
			// A slow connect says what it waits for (on a busy
			// machine, even with the delay this small).
			stderr := connecting.ReplaceAllString(r.Stderr, "")
			if r.Code != 3 || r.Stdout != "out\n" || stderr != "err\n" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 3, out, err", r.Code, r.Stdout, r.Stderr)
			}
			// The environment goes without waiting for answers; it must
			// still be there when the command starts.
			if out := u.Must(ssh("echo $LANG $COLORTERM")...); out != "C.UTF-8 truecolor\n" {
				t.Errorf("the session's LANG and COLORTERM: %q", out)
			}
			if r := u.RunInput("piped\n", ssh("cat")...); r.Code != 0 || r.Stdout != "piped\n" {
				t.Errorf("stdin through cat: exit %d, %q", r.Code, r.Stdout)
			}
			if out := u.Must(ssh("seq 1 20000 | tail -n 1")...); out != "20000\n" {
				t.Errorf("the last line of a long output: %q", out)
			}
		})
	}

	// The CLI saved the connection info; a stale one (a relay that no
	// longer exists) is replaced by the server's before anything goes
	// through the tunnel.
	saved := filepath.Join(u.ConfigDir, "connection-info.json")
	b, err := os.ReadFile(saved)
	if err != nil {
		t.Fatalf("no saved connection info: %v", err)
	}
	relayPort := `"DERPPort":` + proxyPort(proxy)
	stale := strings.Replace(string(b), relayPort, `"DERPPort":1`, 1)
	if stale == string(b) {
		t.Fatalf("the saved connection info does not have %s:\n%s", relayPort, b)
	}
	if err := os.WriteFile(saved, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := u.Must("ssh", "--disable-direct", dep.Workspace, "--", "echo", "fresh"); out != "fresh\n" {
		t.Errorf("with a stale saved connection info: %q", out)
	}
	if b2, _ := os.ReadFile(saved); string(b2) != string(b) {
		t.Errorf("the stale connection info was not replaced:\n%s", b2)
	}

	// The agent moves: a new process, with a new key.
	before := proxy.Stats().Conns
	dep.Agent.Stop()
	agent := here.StartAgent(t, dep.AgentURL, dep.Token)
	harness.WaitFor(t, harness.StatusTimeout, "the new agent connected", func() bool {
		return proxy.Stats().Conns > before && u.AgentStatus(dep.Workspace) == "connected"
	})
	defer agent.Stop()
	if out := u.Must("ssh", "--disable-direct", dep.Workspace, "--", "echo", "moved"); out != "moved\n" {
		t.Errorf("after the agent restarted: %q", out)
	}
}

// connecting matches the CLI's note that a connection takes a while.
var connecting = regexp.MustCompile(`(?m)^Connecting to \S+…\n`)

// proxyPort is the port of the proxy's address.
func proxyPort(p *delayproxy.Proxy) string {
	_, port, _ := strings.Cut(p.Addr(), "127.0.0.1:")
	return port
}
