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

	"golang.org/x/sync/errgroup"
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

// benchRelay measures each relay cell in a lab of its own, removed before
// the next cell's starts: a download over the UDP relay and, on a second
// port forward with --disable-direct, over DERP; the time from the first
// byte to the relay path; and the round trip over the relay, against the
// direct one of the easy↔easy lab (direct).
func benchRelay(ctx context.Context, b *testing.B, bin string, direct *harness.Deployment, d time.Duration) {
	for _, cell := range relayCells {
		b.Run(cell.name, func(b *testing.B) { benchRelayCell(ctx, b, bin, cell.name, cell.agent, cell.cli, direct, d) })
	}
}

// benchRelayCell measures one relay cell; its lab goes with b.
func benchRelayCell(ctx context.Context, b *testing.B, bin, name string, agentKind, cliKind natlab.RouterKind, direct *harness.Deployment, d time.Duration) {
	lab := natlab.New(b)
	dep, srvH, _, cli, src := startLabCell(b, lab, bin, agentKind, cliKind)
	f, err := startForward(ctx, dep, cli, src.port())
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if err := drain(f.conn, time.Second); err != nil {
		b.Fatalf("%s: warm-up: %v", name, err)
	}
	relayMBps, windows, err := receiveWindows(f.conn, d, natWindows)
	if err != nil {
		b.Fatalf("%s: relay download: %v", name, err)
	}
	path := magicsockPath(f.pf.Output())
	f.close()
	// The relay's round trip, the direct one it is compared with, and the
	// round trip between the CLI's host and the server itself (a STUN
	// request to the server process, through the same routers: the
	// relay's two extra crossings of the server), all at the same time:
	// whatever else the machine does weighs on the three alike. A ping
	// every 20 ms costs next to nothing, so they do not slow each other.
	var rtt, directRTT, srvRTT time.Duration
	var g errgroup.Group
	g.Go(func() (err error) { rtt, err = pingRTT(ctx, dep, "relay"); return err })
	g.Go(func() (err error) { directRTT, err = pingRTT(ctx, direct, "direct"); return err })
	g.Go(func() (err error) { srvRTT, err = stunRTT(ctx, cli, netip.AddrPortFrom(srvH.IP(), 3478)); return err })
	if err := g.Wait(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	fd, err := startForwardDERP(ctx, dep, cli, src.port())
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	if err := drain(fd.conn, time.Second); err != nil {
		b.Fatalf("%s: DERP warm-up: %v", name, err)
	}
	derpBps, err := receive(fd.conn, d)
	fd.close()
	if err != nil {
		b.Fatalf("%s: DERP download: %v", name, err)
	}
	b.ReportMetric(relayMBps, "relay-"+name+"-MB/s")
	b.ReportMetric(derpBps/1e6, "derp-"+name+"-MB/s")
	b.ReportMetric(millis(f.upgrade), "relay-up-"+name+"-ms")
	b.ReportMetric(float64(rtt.Microseconds()), "rtt-relay-"+name+"-µs")
	b.ReportMetric(float64(directRTT.Microseconds()), "rtt-direct-"+name+"-µs")
	b.ReportMetric(float64(srvRTT.Microseconds()), "rtt-server-"+name+"-µs")
	b.ReportMetric(float64((rtt - directRTT).Microseconds()), "rtt-relay-extra-"+name+"-µs")
	b.Logf("%s nat/relay-%s port-forward down over the UDP relay, one connection, %s each; %srelay path %.0f ms after the first byte (%s)",
		natNote, name, d, ratesNote(windows), millis(f.upgrade), path)
	b.Logf("%s nat/derp-%s the same cell with --disable-direct (DERP only), %s", natNote, name, d)
	b.Logf("%s nat/relay-up-%s first byte of a port-forward download to the library's relay path", natNote, name)
	b.Logf("%s nat/rtt-relay-%s median of %d tether pings on the relay path", natNote, name, rttCounted)
	b.Logf("%s nat/rtt-direct-%s median of %d tether pings on the direct path of the easy↔easy lab, at the same time", natNote, name, rttCounted)
	b.Logf("%s nat/rtt-server-%s median of %d STUN round trips from the CLI's host to the server's STUN server, at the same time", natNote, name, rttCounted)
	b.Logf("%s nat/rtt-relay-extra-%s the relay's round trip minus the direct one measured at the same time", natNote, name)
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

// Round trips are the median of the last rttCounted of rttProbes probes,
// rttInterval apart: hundreds, because the figures are tenths of a
// millisecond and one preempted process moves a small sample's median.
const (
	rttProbes   = 200
	rttCounted  = 160
	rttInterval = 20 * time.Millisecond
)

// stunRTT sends STUN binding requests from h to server and returns the
// median round trip of those counted.
func stunRTT(ctx context.Context, h *natlab.Host, server netip.AddrPort) (time.Duration, error) {
	conn, err := h.DialContext(ctx, "udp4", server.String())
	if err != nil {
		return 0, fmt.Errorf("STUN round trip: %w", err)
	}
	defer conn.Close()
	var rtts []time.Duration
	buf := make([]byte, 1500)
	for range rttProbes {
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
		time.Sleep(rttInterval)
	}
	if len(rtts) > rttCounted {
		rtts = rtts[len(rtts)-rttCounted:]
	}
	if len(rtts) < rttCounted/2 {
		return 0, fmt.Errorf("STUN round trip: only %d of %d requests answered by %s", len(rtts), rttProbes, server)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

// pingRTT runs tether pings and returns the median latency of the last
// that took path.
func pingRTT(ctx context.Context, dep *harness.Deployment, path string) (time.Duration, error) {
	r, err := dep.User.Exec(ctx, "", "ping", dep.Workspace,
		"-n", strconv.Itoa(rttProbes), "-i", rttInterval.String(), "--output", "json")
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("tether ping exited %d: %s", r.Code, r.Stderr)
	}
	if err != nil {
		return 0, err
	}
	out := r.Stdout
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
	if len(lat) > rttCounted {
		lat = lat[len(lat)-rttCounted:]
	}
	if len(lat) < rttCounted/2 {
		return 0, fmt.Errorf("only %d of %d pings took the %s path:\n%s", len(lat), rttProbes, path, harness.Tail(out, tailLines))
	}
	slices.Sort(lat)
	return time.Duration(lat[len(lat)/2] * float64(time.Millisecond)), nil
}
