package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"tailscale.com/net/stun"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// natRelayPort is the server's UDP relay port in the NAT labs.
const natRelayPort = 3479

// relayCells are the lab cells that cannot go direct but reach the server
// over UDP: their paths go through the server's UDP relay.
var relayCells = []struct {
	name       string // in the metric names
	agent, cli natlab.RouterKind
}{
	{"hardhard", natlab.HardNAT, natlab.HardNAT},
	{"easyhard", natlab.EasyNAT, natlab.HardNAT},
}

// benchRelay measures each relay cell in a lab of its own: a download over
// the UDP relay and, on a second port forward with --disable-direct, over
// DERP; the time from the first byte to the relay path; and the round trip
// over the relay, against the direct one of the easy↔easy lab (dep).
func benchRelay(ctx context.Context, b *testing.B, bin string, dep *harness.Deployment, d time.Duration) {
	directRTT, err := pingRTT(ctx, dep, "direct")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(directRTT.Microseconds()), "rtt-direct-µs")
	b.Logf("%s nat/rtt-direct easy↔easy: median of 40 tether pings on the direct path", natNote)
	for _, cell := range relayCells {
		lab := natlab.New(b)
		cdep, srvH, _, cli, src := startLabCell(b, lab, bin, cell.agent, cell.cli)
		f, err := startForward(ctx, cdep, cli, src.port())
		if err != nil {
			b.Fatalf("%s: %v", cell.name, err)
		}
		if err := drain(f.conn, time.Second); err != nil {
			b.Fatalf("%s: warm-up: %v", cell.name, err)
		}
		relayBps, err := receive(f.conn, d)
		if err != nil {
			b.Fatalf("%s: relay download: %v", cell.name, err)
		}
		path := magicsockPath(f.pf.Output())
		f.close()
		rtt, err := pingRTT(ctx, cdep, "relay")
		if err != nil {
			b.Fatalf("%s: %v", cell.name, err)
		}
		fd, err := startForwardDERP(ctx, cdep, cli, src.port())
		if err != nil {
			b.Fatalf("%s: %v", cell.name, err)
		}
		if err := drain(fd.conn, time.Second); err != nil {
			b.Fatalf("%s: DERP warm-up: %v", cell.name, err)
		}
		derpBps, err := receive(fd.conn, d)
		fd.close()
		if err != nil {
			b.Fatalf("%s: DERP download: %v", cell.name, err)
		}
		b.ReportMetric(relayBps/1e6, "relay-"+cell.name+"-MB/s")
		b.ReportMetric(derpBps/1e6, "derp-"+cell.name+"-MB/s")
		b.ReportMetric(millis(f.upgrade), "relay-up-"+cell.name+"-ms")
		b.ReportMetric(float64(rtt.Microseconds()), "rtt-relay-"+cell.name+"-µs")
		// What the relay adds to the direct round trip, against the round
		// trip between the CLI's host and the server itself (a STUN
		// request to the server process, through the same routers): the
		// relay's two extra crossings of the server.
		srvRTT, err := stunRTT(ctx, cli, netip.AddrPortFrom(srvH.IP(), 3478))
		if err != nil {
			b.Fatalf("%s: %v", cell.name, err)
		}
		b.ReportMetric(float64(srvRTT.Microseconds()), "rtt-server-"+cell.name+"-µs")
		b.ReportMetric(float64((rtt - directRTT).Microseconds()), "rtt-relay-extra-"+cell.name+"-µs")
		b.Logf("%s nat/relay-%s port-forward down over the UDP relay, one connection, %s; relay path %.0f ms after the first byte (%s)",
			natNote, cell.name, d, millis(f.upgrade), path)
		b.Logf("%s nat/derp-%s the same cell with --disable-direct (DERP only), %s", natNote, cell.name, d)
		b.Logf("%s nat/relay-up-%s first byte of a port-forward download to the library's relay path", natNote, cell.name)
		b.Logf("%s nat/rtt-relay-%s median of 40 tether pings on the relay path", natNote, cell.name)
		b.Logf("%s nat/rtt-server-%s median of 40 STUN round trips from the CLI's host to the server's STUN server", natNote, cell.name)
		b.Logf("%s nat/rtt-relay-extra-%s the relay's round trip minus the direct one (easy↔easy lab)", natNote, cell.name)
	}
}

// startLabCell runs a server on a public host, an agent and a CLI behind
// the given NATs, and a source on the agent's loopback.
func startLabCell(t testing.TB, lab *natlab.Lab, bin string, agentKind, cliKind natlab.RouterKind) (dep *harness.Deployment, srvH, agent, cli *natlab.Host, src *server) {
	srvH = lab.AddHost("server", natlab.Public)
	agent = lab.AddHost("agent", agentKind)
	cli = lab.AddHost("client", cliKind)
	on := func(h *natlab.Host) harness.Tether {
		return harness.Tether{Bin: bin, Command: h.Command, Host: h.Name()}
	}
	ip := srvH.IP().String()
	srv := on(srvH).StartServerWith(t, harness.ServerOptions{
		Addr: ip + ":3000", STUN: []string{ip + ":3478"}, UDPRelay: ip + ":" + strconv.Itoa(natRelayPort),
	})
	dep = harness.StartDeployment(t, srv, harness.DeploymentOptions{Workspace: "bench", CLI: on(cli), Agent: on(agent)})
	ln, err := agent.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src = serve(ln, source)
	t.Cleanup(src.close)
	return dep, srvH, agent, cli, src
}

// startForwardDERP starts a port forward with --disable-direct and reads
// its first byte.
func startForwardDERP(ctx context.Context, dep *harness.Deployment, cli *natlab.Host, srcPort int) (*forward, error) {
	pf := dep.User.Start("port-forward DERP", "port-forward", dep.Workspace,
		"--tcp", fmt.Sprintf("%d:%d", natForwardPort+1, srcPort), "--disable-direct")
	pf.WaitLine(pressCtrlC)
	conn, err := cli.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", natForwardPort+1))
	if err != nil {
		pf.Stop()
		return nil, err
	}
	return &forward{pf: pf, conn: conn}, nil
}

// stunRTT sends 60 STUN binding requests from h to server, 20 ms apart,
// and returns the median round trip of the last 40 answered.
func stunRTT(ctx context.Context, h *natlab.Host, server netip.AddrPort) (time.Duration, error) {
	conn, err := h.DialContext(ctx, "udp4", server.String())
	if err != nil {
		return 0, fmt.Errorf("STUN round trip: %w", err)
	}
	defer conn.Close()
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for range 60 {
		tx := stun.NewTxID()
		start := time.Now()
		if _, err := conn.Write(stun.Request(tx)); err != nil {
			return 0, fmt.Errorf("STUN round trip: %w", err)
		}
		conn.SetReadDeadline(start.Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // lost: the next one
			}
			if got, _, err := stun.ParseResponse(buf[:n]); err == nil && got == tx {
				rtts = append(rtts, time.Since(start))
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(rtts) > 40 {
		rtts = rtts[len(rtts)-40:]
	}
	if len(rtts) < 10 {
		return 0, fmt.Errorf("STUN round trip: only %d of 60 requests answered by %s", len(rtts), server)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

// pingRTT runs 60 tether pings 50 ms apart and returns the median latency
// of the last 40 that took path.
func pingRTT(ctx context.Context, dep *harness.Deployment, path string) (time.Duration, error) {
	out := dep.User.Must("ping", dep.Workspace, "-n", "60", "-i", "50ms", "--output", "json")
	var lat []float64
	for _, line := range strings.Split(out, "\n") {
		var p struct {
			Path      string  `json:"path"`
			LatencyMS float64 `json:"latency_ms"`
		}
		if json.Unmarshal([]byte(line), &p) == nil && p.Path == path {
			lat = append(lat, p.LatencyMS)
		}
	}
	if len(lat) > 40 {
		lat = lat[len(lat)-40:]
	}
	if len(lat) < 10 {
		return 0, fmt.Errorf("only %d of 60 pings took the %s path:\n%s", len(lat), path, harness.Tail(out, tailLines))
	}
	slices.Sort(lat)
	return time.Duration(lat[len(lat)/2] * float64(time.Millisecond)), nil
}
