package e2e

// The web terminal's direct path: browser to agent over WebRTC, signalled
// through the server, relayed at once and again when the path dies.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tetherdev/tether/internal/harness"
)

const (
	// terminalPath is the path the terminal page shows: "relayed",
	// "direct", or "" while it is not connected.
	terminalPath = `document.querySelector(".terminal-path")?.dataset.path ?? ""`
	// terminalDirectTimeout bounds the upgrade and the fallback: ICE on loopback
	// takes well under a second, and a dead path is noticed within ICE's
	// consent timeouts (a few seconds in the browser, 10 s in the agent).
	terminalDirectTimeout = 40 * time.Second
)

// waitTerminalPath waits until the terminal page shows path.
func (p *tab) waitTerminalPath(path string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if got := p.text(terminalPath); got == path {
			return
		}
		if time.Now().After(deadline) {
			p.fatalf("the terminal's path is %q after %s, want %q", p.text(terminalPath), within, path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentICEPorts are the agent's UDP ports on the direct path: one per
// candidate it offered, as the browser's statistics have them. Cutting
// only the selected pair's port is no cut: on a machine with more than one
// address the browser's ICE moves the path to another of the agent's
// candidates within seconds.
func (p *tab) agentICEPorts() []int {
	p.t.Helper()
	const expr = `(async () => {
		const pc = window.tetherTerminalPeer;
		if (!pc) return "[]";
		const ports = new Set();
		(await pc.getStats()).forEach((r) => { if (r.type === "remote-candidate" && r.port) ports.add(r.port); });
		return JSON.stringify([...ports]);
	})()`
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	var ports []int
	if err == nil {
		err = json.Unmarshal([]byte(s), &ports)
	}
	if err != nil || len(ports) == 0 {
		p.fatalf("the agent's candidates on the direct path: %q, %v", s, err)
	}
	// The selected pair's port is among them, or the statistics are not
	// what this test thinks they are.
	if sel := p.selectedPair().RemotePort; !slices.Contains(ports, sel) {
		p.fatalf("the selected pair's agent port %d is not among the agent's candidates %v", sel, ports)
	}
	return ports
}

// blockUDPPorts drops every UDP packet to or from ports on this machine
// until the test ends, in a table of its own: the agent's side of a direct
// path goes dead as if a firewall had cut it.
func blockUDPPorts(t *testing.T, ports []int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("blocking UDP ports needs root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("blocking UDP ports needs nft (apt-get install nftables)")
	}
	table := fmt.Sprintf("tether_e2e_direct_%d", rand.Uint32())
	nft := func(args ...string) error {
		out, err := exec.Command("nft", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := nft("add", "table", "inet", table); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nft("delete", "table", "inet", table); err != nil {
			t.Error(err)
		}
	})
	set := make([]string, len(ports))
	for i, port := range ports {
		set[i] = strconv.Itoa(port)
	}
	p := "{ " + strings.Join(set, ", ") + " }"
	for _, args := range [][]string{
		{"add", "chain", "inet", table, "in", "{ type filter hook input priority -10 ; }"},
		{"add", "rule", "inet", table, "in", "udp", "dport", p, "drop"},
		{"add", "rule", "inet", table, "in", "udp", "sport", p, "drop"},
	} {
		if err := nft(args...); err != nil {
			t.Fatal(err)
		}
	}
}

// relayedBytes is what the server relayed of terminals, both ways.
func relayedBytes(t *testing.T, promURL string) float64 {
	t.Helper()
	g := scrape(t, promURL)
	return metric(t, g, "tether_web_terminal_relayed_bytes_total", "direction", "to_browser") +
		metric(t, g, "tether_web_terminal_relayed_bytes_total", "direction", "to_agent")
}

// TestBrowserTerminalDirect: the web terminal starts relayed and goes
// direct; then the server relays no terminal byte; a direct path cut
// mid-output falls back to the relay without losing or repeating a line;
// a reload comes back to the same shell, direct again.
func TestBrowserTerminalDirect(t *testing.T) {
	srv := here.StartServer(t, "--prometheus-address", "127.0.0.1:0")
	env := harness.StartDeployment(t, srv, harness.DeploymentOptions{AgentEnv: []string{"TETHER_AGENT_LOG_LEVEL=debug"}})
	t.Cleanup(func() {
		if t.Failed() {
			var keep []string
			for _, l := range strings.Split(env.Agent.Output(), "\n") {
				if strings.Contains(l, "component=pty") {
					keep = append(keep, l)
				}
			}
			t.Logf("agent:\n%s", strings.Join(keep, "\n"))
		}
	})
	promURL := urlFromLog(t, srv.Proc, promURLRE)
	b := newBrowser(t)
	p := b.tab("alice")
	p.signIn(env.Server.URL, "alice", "correct-horse")
	opened := time.Now()
	p.navigate(env.Server.URL + "/@alice/dev/terminal")
	p.waitText("the terminal to connect and the shell to start", terminalReady, func(s string) bool { return s != "" })
	p.waitTerminalPath("direct", terminalDirectTimeout)
	t.Logf("the terminal was direct %s after the page was asked for", time.Since(opened).Round(time.Millisecond))

	// The server knows, and from then on relays nothing.
	harness.WaitFor(t, harness.StatusTimeout, "the server to count the terminal direct", func() bool {
		return metric(t, scrape(t, promURL), "tether_web_terminals", "path", "direct") == 1
	})
	// The dashboard shows it on the workspace's row.
	d := b.tab("alice's dashboard")
	d.signIn(env.Server.URL, "alice", "correct-horse")
	d.waitContains("the workspace's web terminal on the dashboard",
		`document.querySelector('tr.ws-row[data-workspace="alice/dev"] .terminals')?.textContent`, "Web terminal: direct")
	before := relayedBytes(t, promURL)
	p.focusedKeys("TETHER_MARK=direct-$((6*7)); echo set-$TETHER_MARK\r")
	p.waitContains("the command's output, direct", terminalRows, "set-direct-42")
	// More output than the session's scrollback (64 KiB) holds: a
	// fallback that replayed the scrollback instead of resuming would lose
	// the line above.
	p.focusedKeys("head -c 100000 /dev/zero | tr '\\0' x; echo; echo bulk-$((2*2))-done\r")
	p.waitContains("the bulk output, direct", terminalRows, "bulk-4-done")
	if after := relayedBytes(t, promURL); after != before {
		t.Errorf("the server relayed %v terminal bytes after the upgrade, want none", after-before)
	}
	p.screenshot("terminal-direct")

	// Cut the direct path in the middle of output: the relay takes over
	// from the last byte on the screen.
	p.focusedKeys("for i in $(seq 1 500); do echo line-$i; sleep 0.02; done; echo loop-$((1+1))-done\r")
	p.waitContains("the loop's first lines", terminalRows, "line-20")
	blockUDPPorts(t, p.agentICEPorts())
	cut := time.Now()
	p.waitTerminalPath("relayed", terminalDirectTimeout)
	t.Logf("the terminal fell back to the relay %s after the cut", time.Since(cut).Round(time.Millisecond))
	// The loop outlives the fallback: forks are slow on a loaded machine.
	harness.WaitFor(t, terminalDirectTimeout, "the end of the loop", func() bool {
		return strings.Contains(p.text(terminalBuffer), "loop-2-done")
	})
	lines := regexp.MustCompile(`(?m)^line-(\d+)\s*$`).FindAllStringSubmatch(p.text(terminalBuffer), -1)
	next := 1
	for _, m := range lines {
		n, _ := strconv.Atoi(m[1])
		if n != next {
			t.Fatalf("after the fallback the terminal shows line-%d where line-%d belongs: output was lost or repeated", n, next)
		}
		next++
	}
	if next != 501 {
		t.Fatalf("the terminal shows lines 1 to %d of 500", next-1)
	}
	if got := strings.Count(p.text(terminalBuffer), "set-direct-42"); got != 1 {
		t.Errorf("after the fallback the terminal holds the output from before the bulk output %d times, want once", got)
	}
	if relayedBytes(t, promURL) == before {
		t.Errorf("the server relayed nothing after the direct path was cut")
	}

	// The page tries again; the agent's new port is not blocked.
	p.waitTerminalPath("direct", terminalDirectTimeout)

	// A reload attaches to the same shell, and goes direct again.
	p.reloadDirect("direct-42")
	if got := strings.Count(p.text(terminalBuffer), "loop-2-done"); got != 1 {
		t.Errorf("after the reload the terminal holds the loop's end %d times, want once", got)
	}
}

// reloadDirect reloads a terminal page that is direct and checks that it
// comes back to the same session and shell (whose TETHER_MARK is mark),
// direct again.
func (p *tab) reloadDirect(mark string) {
	p.t.Helper()
	session := p.location().Query().Get("session")
	p.reload()
	if got := p.location().Query().Get("session"); got != session {
		p.fatalf("after a reload the page is on session %q, want %q", got, session)
	}
	p.waitText("the terminal to reconnect", terminalReady, func(s string) bool { return s != "" })
	p.waitTerminalPath("direct", terminalDirectTimeout)
	p.focusedKeys("echo mark=$TETHER_MARK\r")
	p.waitContains("the variable set before the reload", terminalRows, "mark="+mark)
}

// probeSignal opens the terminal WebSocket of owner/workspace from the
// page, as a script of that page could, sends a real WebRTC offer (with
// fields that try to name another session and workspace), and returns what
// happened: "open", each text message, and "close CODE".
func (p *tab) probeSignal(owner, workspace string) string {
	p.t.Helper()
	expr := fmt.Sprintf(`(async () => {
		const pc = new RTCPeerConnection();
		pc.createDataChannel("pty");
		const offer = await pc.createOffer();
		await pc.setLocalDescription(offer);
		const url = location.origin.replace(/^http/, "ws") + "/api/v2/workspaces/" + %s + "/" + %s + "/pty?reconnect=probe";
		const events = [];
		const done = await new Promise((resolve) => {
			let ws;
			try { ws = new WebSocket(url); } catch (e) { resolve("refused " + e); return; }
			ws.onopen = () => {
				events.push("open");
				ws.send(JSON.stringify({signal: {type: "offer", sdp: offer.sdp, session: "alice/stolen"}, workspace: "alice/dev", reconnect: "stolen"}));
			};
			ws.onmessage = (e) => { if (typeof e.data === "string") events.push(e.data); };
			ws.onclose = (e) => { events.push("close " + e.code); resolve(events.join("\n")); };
			setTimeout(() => { ws.close(); resolve(events.join("\n")); }, 8000);
		});
		pc.close();
		return done;
	})()`, jsString(owner), jsString(workspace))
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatalf("probe the terminal WebSocket of %s/%s: %v", owner, workspace, err)
	}
	return s
}

// directSessions is how many signalling connections an agent has taken.
func directSessions(t *testing.T, promURL string) float64 {
	t.Helper()
	return metric(t, scrape(t, promURL), "tether_agent_sessions_total", "kind", "pty_direct")
}

// TestBrowserTerminalDirectAuthorization: signalling reaches an agent only
// through a terminal WebSocket its user may open, bound to that user's
// session; nobody else's browser gets an offer to someone else's agent,
// and a direct terminal ends with its user's access.
func TestBrowserTerminalDirectAuthorization(t *testing.T) {
	srv := here.StartServer(t)
	agentMetrics := []string{"TETHER_AGENT_PROMETHEUS_ADDRESS=127.0.0.1:0"}
	alice := harness.StartDeployment(t, srv, harness.DeploymentOptions{AgentEnv: agentMetrics})
	aliceAgent := urlFromLog(t, alice.Agent, promURLRE)
	bob := here.Member(t, srv.URL, alice.User, "bob")
	token, agentURL := bob.CreateWorkspace("box")
	bobAgentProc := here.StartAgent(t, agentURL, token, agentMetrics...)
	bobAgent := urlFromLog(t, bobAgentProc, promURLRE)
	harness.WaitFor(t, harness.StatusTimeout, "bob's agent connected", func() bool { return bob.AgentStatus("box") == "connected" })
	b := newBrowser(t) // after the slow part: the browser has browserTimeout for everything

	anon := b.tab("anonymous")
	anon.navigate(srv.URL + "/login")
	bp := b.tab("bob")
	bp.signIn(srv.URL, "bob", "bob-password")

	for _, c := range []struct {
		name string
		p    *tab
	}{
		{"another member", bp},
		{"nobody signed in", anon},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := c.p.probeSignal("alice", "dev")
			if strings.Contains(got, "open") || strings.Contains(got, "answer") || strings.Contains(got, "direct") {
				t.Errorf("%s opened alice's terminal WebSocket and signalled: %q", c.name, got)
			}
		})
	}
	// Bob's own terminal signals to his own agent only, whatever his
	// messages name.
	got := bp.probeSignal("bob", "box")
	if !strings.Contains(got, `"direct"`) || !strings.Contains(got, `"answer"`) {
		t.Errorf("bob's own terminal got no direct offer and answer: %q", got)
	}
	if n := directSessions(t, bobAgent); n != 1 {
		t.Errorf("bob's agent took %v signalling connections, want 1", n)
	}
	if n := directSessions(t, aliceAgent); n != 0 {
		t.Errorf("alice's agent took %v signalling connections from bob's and nobody's browsers, want none", n)
	}

	// Bob's direct terminal ends when he is suspended: the agent's side of
	// the path closes with the WebSocket that authorized it.
	bp.navigate(srv.URL + "/@bob/box/terminal")
	bp.waitTerminalPath("direct", terminalDirectTimeout)
	open := func() float64 { return metric(t, scrape(t, bobAgent), "tether_agent_sessions", "kind", "pty_direct") }
	harness.WaitFor(t, harness.StatusTimeout, "bob's agent to hold one direct terminal (the probe's ended with its WebSocket)", func() bool { return open() == 1 })
	// A page that would keep its side of the path open after losing access
	// (its script changed, say) keeps nothing: the agent ends the path
	// because the server tells it to, not because the browser let go.
	bp.text(`(() => { RTCDataChannel.prototype.close = () => {}; RTCPeerConnection.prototype.close = () => {}; return ""; })()`)
	alice.User.Must("users", "suspend", "bob")
	bp.waitContains("the terminal to say why it ended", `document.querySelector(".terminal-status")?.innerText ?? ""`, "suspended")
	harness.WaitFor(t, harness.StatusTimeout, "bob's agent to end the direct terminal", func() bool { return open() == 0 })
}

// TestBrowserTerminalDirectOff: with --browser-direct=false the terminal
// stays on the server's relay, and signalling anyway reaches no agent.
func TestBrowserTerminalDirectOff(t *testing.T) {
	srv := here.StartServer(t, "--browser-direct=false")
	env := harness.StartDeployment(t, srv, harness.DeploymentOptions{AgentEnv: []string{"TETHER_AGENT_PROMETHEUS_ADDRESS=127.0.0.1:0"}})
	agent := urlFromLog(t, env.Agent, promURLRE)
	b := newBrowser(t)
	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	if got := p.probeSignal("alice", "dev"); strings.Contains(got, `"direct"`) || !strings.Contains(got, `"error"`) {
		t.Errorf("signalling on a server without direct terminals answered %q, want no offer and an error", got)
	}
	p.navigate(srv.URL + "/@alice/dev/terminal")
	p.waitText("the terminal to connect and the shell to start", terminalReady, func(s string) bool { return s != "" })
	p.focusedKeys("echo relayed-$((3*3))\r")
	p.waitContains("the command's output", terminalRows, "relayed-9")
	if got := p.text(terminalPath); got != "relayed" {
		t.Errorf("the terminal's path is %q, want relayed", got)
	}
	if got := p.text(`window.tetherTerminalPeer ? "peer" : ""`); got != "" {
		t.Errorf("the page opened a peer connection on a server without direct terminals")
	}
	if n := directSessions(t, agent); n != 0 {
		t.Errorf("the agent took %v signalling connections, want none", n)
	}
}
