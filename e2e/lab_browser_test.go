package e2e

// The web terminal's direct path across NATs: headless Chromium in one
// natlab host behind an easy NAT, the agent in another behind an easy NAT,
// the server on the lab's internet. The page goes direct through both NATs
// with the lab's STUN server alone, and stays relayed, intact, when UDP
// between the two is blocked.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/metrics/metricstest"
	"github.com/tetherdev/tether/internal/natlab"
)

// newLabBrowser starts Chromium inside h's namespace: its WebRTC sockets,
// and everything else it opens, are h's. chromedp drives it over the pipes
// it passes as file descriptors 3 and 4, which `ip netns exec` hands on
// when it execs Chromium, so no debugging port has to be reached across
// the namespace.
func newLabBrowser(t *testing.T, h *natlab.Host) *browser {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("run chromium in %s: %v", h.Name(), err)
	}
	return newBrowserWith(t, chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
		cmd.Args = append([]string{"ip", "netns", "exec", h.Namespace(), cmd.Path}, cmd.Args[1:]...)
		cmd.Path = ip
		// chromedp's default, which this function replaces: Chromium
		// dies with the test process (ip execs it, so this is Chromium's).
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}))
}

// pathRecorder runs in the terminal page before its own scripts: it
// records each path the page shows (the .terminal-path element's
// data-path) with the page's clock, and counts the peer connections the
// page makes (a second one means the first attempt was given up).
const pathRecorder = `(() => {
	window.tetherPaths = [];
	window.tetherPeers = 0;
	new MutationObserver((records) => {
		for (const r of records) {
			if (!r.target.classList || !r.target.classList.contains("terminal-path")) continue;
			const path = r.target.dataset.path ?? "";
			const last = window.tetherPaths[window.tetherPaths.length - 1];
			if (!last || last.path !== path) window.tetherPaths.push({path, at: performance.now()});
		}
	}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-path"]});
	// The page says why a direct attempt ended on console.debug.
	window.tetherDebug = [];
	const debug = console.debug.bind(console);
	console.debug = (...args) => { window.tetherDebug.push(args.map(String).join(" ") + " at " + Math.round(performance.now())); debug(...args); };
	const Peer = window.RTCPeerConnection;
	window.RTCPeerConnection = class extends Peer {
		constructor(...args) { super(...args); window.tetherPeers++; }
	};
})()`

// recordPaths installs pathRecorder for the pages the tab loads next.
func (p *tab) recordPaths() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: pathRecorder}); err != nil {
		p.fatalf("install the path recorder: %v", err)
	}
}

// pathChange is one entry of pathRecorder's log: a path and when the page
// showed it, in milliseconds of the page's clock.
type pathChange struct {
	Path string  `json:"path"`
	At   float64 `json:"at"`
}

func (p *tab) pathLog() []pathChange {
	p.t.Helper()
	var log []pathChange
	if err := p.eval(`window.tetherPaths ?? []`, &log); err != nil {
		p.fatalf("read the path log: %v", err)
	}
	return log
}

// firstPath is when the log first shows path, and whether it does.
func firstPath(log []pathChange, path string) (float64, bool) {
	for _, c := range log {
		if c.Path == path {
			return c.At, true
		}
	}
	return 0, false
}

// selectedPair describes the direct path's candidate pair as the browser's
// statistics have it: the kinds of candidate on each side and the agent's
// address.
type selectedPair struct {
	Local        string `json:"local"`
	Remote       string `json:"remote"`
	RemoteAddr   string `json:"remote_addr"`
	RemotePort   int    `json:"remote_port"`
	ICEServers   string `json:"ice_servers"`
	LocalAddress string `json:"local_addr"`
}

func (p *tab) selectedPair() selectedPair {
	p.t.Helper()
	const expr = `(async () => {
		const pc = window.tetherTerminalPeer;
		if (!pc) return "";
		const stats = await pc.getStats();
		let pair;
		stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
		if (!pair) stats.forEach((r) => { if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r; });
		if (!pair) return "";
		const l = stats.get(pair.localCandidateId) ?? {}, r = stats.get(pair.remoteCandidateId) ?? {};
		return JSON.stringify({
			local: l.candidateType ?? "", local_addr: l.address ?? "",
			remote: r.candidateType ?? "", remote_addr: r.address ?? "", remote_port: r.port ?? 0,
			ice_servers: JSON.stringify(pc.getConfiguration().iceServers.map((s) => s.urls)),
		});
	})()`
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil || s == "" {
		p.fatalf("the direct path's candidate pair: %q, %v", s, err)
	}
	var sp selectedPair
	if err := json.Unmarshal([]byte(s), &sp); err != nil {
		p.fatalf("the direct path's candidate pair %q: %v", s, err)
	}
	return sp
}

// labScrape reads Prometheus metrics at url, which is inside h's namespace.
func labScrape(t *testing.T, h *natlab.Host, url string) prometheus.Gatherer {
	t.Helper()
	c := &http.Client{Timeout: harness.CommandTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.DialContext(ctx, "tcp4", addr)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", url, h.Name(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: %s %v: %s", url, h.Name(), resp.Status, err, body)
	}
	g, err := metricstest.ParseText(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("GET %s: not Prometheus' text format: %v", url, err)
	}
	return g
}

// labRelayedBytes is what the server on h relayed of terminals, both ways.
func labRelayedBytes(t *testing.T, h *natlab.Host, promURL string) float64 {
	t.Helper()
	g := labScrape(t, h, promURL)
	return metric(t, g, "tether_web_terminal_relayed_bytes_total", "direction", "to_browser") +
		metric(t, g, "tether_web_terminal_relayed_bytes_total", "direction", "to_agent")
}

// nftOn loads rules into h's namespace.
func nftOn(t *testing.T, h *natlab.Host, rules string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft on %s: %v: %s\n%s", h.Name(), err, out, rules)
	}
}

// udpCounter counts, on h, the UDP bytes that arrive from peer (a public
// address of the lab) other than STUN's: a direct path's traffic. It
// returns a function that reads the count.
func udpCounter(t *testing.T, h *natlab.Host, peer netip.Addr) func() int64 {
	t.Helper()
	nftOn(t, h, fmt.Sprintf(`table ip tetherudpfrom {
	counter fromPeer {}
	chain input {
		type filter hook input priority filter - 20; policy accept;
		ip saddr %s udp sport != %d counter name fromPeer
	}
}
`, peer, labSTUNPort))
	return func() int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
		defer cancel()
		out, err := h.Command(ctx, "nft", "-j", "list", "counter", "ip", "tetherudpfrom", "fromPeer").Output()
		if err != nil {
			t.Fatalf("read the UDP counter on %s: %v", h.Name(), err)
		}
		var v struct {
			Nftables []struct {
				Counter *struct {
					Bytes int64 `json:"bytes"`
				} `json:"counter"`
			} `json:"nftables"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("read the UDP counter on %s: %v: %s", h.Name(), err, out)
		}
		for _, o := range v.Nftables {
			if o.Counter != nil {
				return o.Counter.Bytes
			}
		}
		t.Fatalf("read the UDP counter on %s: no counter in %s", h.Name(), out)
		return 0
	}
}

// blockUDPWith drops, on h, every UDP packet to or from peer, both ways,
// from now on: the two cannot reach each other over UDP, while each still
// reaches the server (and its STUN) as before.
func blockUDPWith(t *testing.T, h *natlab.Host, peer netip.Addr) {
	t.Helper()
	nftOn(t, h, fmt.Sprintf(`table ip tetherblockudp {
	chain input {
		type filter hook input priority filter - 30; policy accept;
		ip saddr %[1]s meta l4proto udp drop
	}
	chain output {
		type filter hook output priority filter - 30; policy accept;
		ip daddr %[1]s meta l4proto udp drop
	}
}
`, peer))
}

// labTerminal is a lab with the server on the internet, the agent behind
// a NAT of agentKind and Chromium behind an easy NAT, signed in, with the
// path recorder installed: what the tests start from.
type labTerminal struct {
	srvH, agentH, browserH *natlab.Host
	promURL                string
	url                    string // the terminal page
	p                      *tab
	ws                     *labWorkspace
	b                      *browser
}

func startLabTerminal(t *testing.T, agentKind natlab.RouterKind) *labTerminal {
	t.Helper()
	lab, srvH := newLab(t, false)
	browserH := lab.AddHost("browser", natlab.EasyNAT)
	agentH := lab.AddHost("agent", agentKind)
	srv := startLabServer(t, srvH, nil, "--prometheus-address", "127.0.0.1:9464")
	// The CLI that creates the workspace runs on the browser's host, as
	// its user would.
	ws := startLabWorkspace(t, lab, srv, agentH, browserH)
	promURL := urlFromLog(t, srv.Proc, promURLRE)
	b := newLabBrowser(t, browserH) // after the slow part: the browser has browserTimeout for everything
	p := b.tab(harness.AdminName)
	p.signIn(ws.Server.URL, harness.AdminName, harness.AdminPassword)
	p.recordPaths()
	return &labTerminal{
		srvH: srvH, agentH: agentH, browserH: browserH, promURL: promURL, p: p, ws: ws, b: b,
		url: ws.Server.URL + "/@" + harness.AdminName + "/dev/terminal",
	}
}

// checkLoopLines checks that the terminal holds line-1 to line-n of a loop
// once each, in order: no output lost or repeated.
func checkLoopLines(t *testing.T, p *tab, n int) {
	t.Helper()
	lines := regexp.MustCompile(`(?m)^line-(\d+)\s*$`).FindAllStringSubmatch(p.text(terminalBuffer), -1)
	next := 1
	for _, m := range lines {
		k, _ := strconv.Atoi(m[1])
		if k != next {
			t.Fatalf("the terminal shows line-%d where line-%d belongs: output was lost or repeated", k, next)
		}
		next++
	}
	if next != n+1 {
		t.Fatalf("the terminal shows lines 1 to %d of %d", next-1, n)
	}
}

// TestLabBrowserTerminalDirect: Chromium behind an easy NAT opens the web
// terminal of an agent behind another easy NAT, with the server on the
// internet. The terminal starts relayed and goes direct through both NATs,
// with the candidates the lab's STUN server (the only ICE server) gives;
// from then on the server relays no terminal byte and the output comes
// over UDP from the agent's NAT. A reload comes back to the same shell,
// direct again. Then UDP between the two is cut in the middle of output:
// the relay takes over without losing or repeating a line. Last, another
// member on the same browser host cannot signal to the agent. How long
// the upgrade took is logged as a figure (the goal is 1 s).
func TestLabBrowserTerminalDirect(t *testing.T) {
	lt := startLabTerminal(t, natlab.EasyNAT)
	p := lt.p
	fromAgent := udpCounter(t, lt.browserH, lt.agentH.PublicIP())
	p.navigate(lt.url)
	p.waitText("the terminal to connect and the shell to start", terminalReady, func(s string) bool { return s != "" })
	p.waitTerminalPath("direct", terminalDirectTimeout)
	log := p.pathLog()
	relayedAt, ok1 := firstPath(log, "relayed")
	directAt, ok2 := firstPath(log, "direct")
	if !ok1 || !ok2 {
		t.Fatalf("the page's path log %+v lacks the relayed start or the upgrade", log)
	}
	t.Logf("FIGURE browser behind easy NAT ↔ agent behind easy NAT: the terminal was direct %.0f ms after it opened relayed (goal: 1 s); page loaded to direct %.0f ms; peer connections made: %s %s",
		directAt-relayedAt, directAt, p.text(`String(window.tetherPeers ?? 0)`), p.text(`JSON.stringify(window.tetherDebug ?? [])`))
	// An attempt may time out on a loaded machine, but signalling must
	// never fail (the agent's candidates once came before its answer).
	if why := p.text(`JSON.stringify(window.tetherDebug ?? [])`); strings.Contains(why, "signalling failed") {
		t.Errorf("a direct attempt ended in its signalling: %s", why)
	}

	// Through the NATs, with the lab's STUN server and nothing else: the
	// agent's side of the pair is its NAT's public address, which only
	// STUN (the agent's server-reflexive candidate) or its own checks
	// through the NAT can have made known.
	pair := p.selectedPair()
	t.Logf("selected candidate pair: browser %s %s, agent %s %s; ICE servers %s", pair.Local, pair.LocalAddress, pair.Remote, pair.RemoteAddr, pair.ICEServers)
	wantICE := fmt.Sprintf(`[["stun:%s"]]`, netip.AddrPortFrom(lt.srvH.IP(), labSTUNPort))
	if pair.ICEServers != wantICE {
		t.Errorf("the page's ICE servers are %s, want the lab's STUN server alone: %s", pair.ICEServers, wantICE)
	}
	if pair.Remote != "srflx" && pair.Remote != "prflx" {
		t.Errorf("the agent's candidate on the direct path is %q, want its NAT's (srflx or prflx)", pair.Remote)
	}
	if pair.RemoteAddr != "" && pair.RemoteAddr != lt.agentH.PublicIP().String() {
		t.Errorf("the direct path goes to %s, want the agent's NAT at %s", pair.RemoteAddr, lt.agentH.PublicIP())
	}

	// The server knows, and from then on relays nothing: the output comes
	// over UDP from the agent's NAT.
	harness.WaitFor(t, harness.StatusTimeout, "the server to count the terminal direct", func() bool {
		return metric(t, labScrape(t, lt.srvH, lt.promURL), "tether_web_terminals", "path", "direct") == 1
	})
	before, udpBefore := labRelayedBytes(t, lt.srvH, lt.promURL), fromAgent()
	p.focusedKeys("TETHER_MARK=nat-$((6*7)); echo set-$TETHER_MARK\r")
	p.waitContains("the command's output, direct", terminalRows, "set-nat-42")
	p.focusedKeys("head -c 100000 /dev/zero | tr '\\0' x; echo; echo bulk-$((2*2))-done\r")
	p.waitContains("the bulk output, direct", terminalRows, "bulk-4-done")
	if after := labRelayedBytes(t, lt.srvH, lt.promURL); after != before {
		t.Errorf("the server relayed %v terminal bytes after the upgrade, want none", after-before)
	}
	if got := fromAgent() - udpBefore; got < 100000 {
		t.Errorf("%d bytes came over UDP from the agent's NAT during 100000 bytes of output, want them all", got)
	}
	p.screenshot("terminal-direct-nat")

	// A reload attaches to the same shell, and goes direct again through
	// the NATs.
	p.reloadDirect("nat-42")

	// Cut UDP between the two in the middle of output: the relay takes
	// over from the last byte on the screen.
	p.focusedKeys("for i in $(seq 1 300); do echo line-$i; sleep 0.02; done; echo loop-$((1+1))-done\r")
	p.waitContains("the loop's first lines", terminalRows, "line-20")
	before = labRelayedBytes(t, lt.srvH, lt.promURL)
	blockUDPWith(t, lt.agentH, lt.browserH.PublicIP())
	cut := time.Now()
	p.waitTerminalPath("relayed", terminalDirectTimeout)
	t.Logf("FIGURE UDP cut between browser and agent: relayed again after %s", time.Since(cut).Round(time.Millisecond))
	harness.WaitFor(t, terminalDirectTimeout, "the end of the loop", func() bool {
		return strings.Contains(p.text(terminalBuffer), "loop-2-done")
	})
	checkLoopLines(t, p, 300)
	// (The reload's replay of the scrollback no longer reaches back to
	// set-nat-42, 100 kB of output ago.)
	if got := strings.Count(p.text(terminalBuffer), "mark=nat-42"); got != 1 {
		t.Errorf("after the fallback the terminal holds the output from before it %d times, want once", got)
	}
	if labRelayedBytes(t, lt.srvH, lt.promURL) == before {
		t.Errorf("the server relayed nothing after UDP was cut")
	}

	// Another member, signed in on the same browser host, cannot signal
	// to this agent, whatever her messages name.
	lt.ws.User.Must("users", "create", "--username", "bob", "--email", "bob@example.com", "--password", "bob-password")
	bob := lt.b.tab("bob")
	bob.signIn(lt.ws.Server.URL, "bob", "bob-password")
	if got := bob.probeSignal(harness.AdminName, "dev"); strings.Contains(got, "open") || strings.Contains(got, "answer") || strings.Contains(got, "direct") {
		t.Errorf("another member opened alice's terminal WebSocket and signalled: %q", got)
	}
}

// TestLabBrowserTerminalRelayed: where no direct path exists between the
// browser's and the agent's NATs (UDP between the two blocked, while each
// still reaches the server and its STUN; or the agent behind a NAT that
// maps each destination to another port), the page tries the direct path,
// gives it up, and the terminal works relayed exactly as without it:
// every line of output once, in order.
func TestLabBrowserTerminalRelayed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		agentKind natlab.RouterKind
		block     bool
	}{
		{"UDP blocked between them", natlab.EasyNAT, true},
		{"agent behind a hard NAT", natlab.HardNAT, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lt := startLabTerminal(t, tc.agentKind)
			p := lt.p
			if tc.block {
				blockUDPWith(t, lt.agentH, lt.browserH.PublicIP())
			}
			fromAgent := udpCounter(t, lt.browserH, lt.agentH.PublicIP())
			p.navigate(lt.url)
			p.waitText("the terminal to connect and the shell to start", terminalReady, func(s string) bool { return s != "" })
			before := labRelayedBytes(t, lt.srvH, lt.promURL)
			// The typing starts while the first attempt is under way.
			p.focusedKeys("for i in $(seq 1 300); do echo line-$i; sleep 0.01; done; echo loop-$((1+1))-done\r")
			// A second peer connection means the first attempt was given
			// up; the loop outlives it.
			harness.WaitFor(t, terminalDirectTimeout, "the page to give a direct attempt up and try again", func() bool {
				n, _ := strconv.Atoi(p.text(`String(window.tetherPeers ?? 0)`))
				return n >= 2
			})
			harness.WaitFor(t, terminalDirectTimeout, "the end of the loop", func() bool {
				return strings.Contains(p.text(terminalBuffer), "loop-2-done")
			})
			checkLoopLines(t, p, 300)
			p.focusedKeys("echo after-$((5*5))\r")
			p.waitContains("a command after the attempts", terminalRows, "after-25")
			if _, ok := firstPath(p.pathLog(), "direct"); ok {
				t.Errorf("the page went direct: %+v", p.pathLog())
			}
			if got := p.text(terminalPath); got != "relayed" {
				t.Errorf("the terminal's path is %q, want relayed", got)
			}
			if after := labRelayedBytes(t, lt.srvH, lt.promURL); after <= before {
				t.Errorf("the server relayed %v terminal bytes, want the output", after-before)
			}
			if n := fromAgent(); tc.block && n != 0 {
				t.Errorf("%d bytes came over UDP from the agent's NAT, with UDP between the two blocked", n)
			}
		})
	}
}
