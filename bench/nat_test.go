package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// BenchmarkNAT measures what needs two NATs: how long a relayed connection
// takes to go direct between two easy NATs, and throughput with 0.5% random
// loss at each side's router against the same transfer without loss. The
// server is a Public host; the agent and the CLI are each behind an easy
// NAT. It runs once per invocation (-test.benchtime 1x): `go run ./bench`
// runs it, or by hand, as root:
//
//	go test -run '^$' -bench NAT -benchtime 1x -v ./bench
func BenchmarkNAT(b *testing.B) {
	lab := natlab.New(b) // skips unless root with ip and nft
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	bin := os.Getenv(envTether)
	if bin == "" {
		root, err := harness.ModuleRoot()
		if err != nil {
			b.Fatal(err)
		}
		if bin, err = harness.Build(ctx, root, b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	duration := 3 * time.Second
	if s := os.Getenv(envDuration); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("%s: %v", envDuration, err)
		}
		duration = d
	}
	runs := 3
	if s := os.Getenv(envNATRuns); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive count", envNATRuns, s)
		}
		runs = n
	}

	dep, agent, cli, src := startNATLab(b, lab, bin)

	b.Run("upgrade", func(b *testing.B) {
		var firsts, ups, dataUps []time.Duration
		for range runs {
			first, up, err := timeUpgrade(ctx, dep)
			if err != nil {
				b.Fatal(err)
			}
			firsts = append(firsts, first)
			ups = append(ups, up)
		}
		// With data flowing instead of pings: a fresh port forward each
		// time, downloading until the library switches paths.
		for range runs {
			f, err := startForward(ctx, dep, cli, src.port())
			if err != nil {
				b.Fatal(err)
			}
			dataUps = append(dataUps, f.upgrade)
			f.close()
		}
		fs, us, ds := summarize(firsts), summarize(ups), summarize(dataUps)
		b.ReportMetric(millis(fs.P50), "first-pong-p50-ms")
		b.ReportMetric(millis(us.P50), "upgrade-p50-ms")
		b.ReportMetric(millis(us.Max), "upgrade-max-ms")
		b.ReportMetric(millis(ds.P50), "upgrade-data-p50-ms")
		b.ReportMetric(millis(ds.Max), "upgrade-data-max-ms")
		b.Logf("%s nat/first-pong-p50 CLI start to first pong, %d runs", natNote, fs.N)
		b.Logf("%s nat/upgrade-p50 tether ping -i %s: first pong to first direct pong, %d runs; max %.0f ms",
			natNote, upgradePingInterval, us.N, millis(us.Max))
		b.Logf("%s nat/upgrade-data-max the slowest of the same runs", natNote)
		b.Logf("%s nat/upgrade-data-p50 port-forward download: first byte to the library's direct path (its log's clock), %d runs; each: %s",
			natNote, ds.N, msList(dataUps))
	})

	b.Run("relay", func(b *testing.B) { benchRelay(ctx, b, bin, dep, duration) })

	b.Run("loss", func(b *testing.B) {
		lossless, lossy, err := lossTransfer(ctx, dep, agent, cli, src.port(), duration)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s nat/lossless %s", natNote, lossless.note)
		b.Logf("%s nat/lossy 0.5%% loss at each router, same connection; %s", natNote, lossy.note)
		b.ReportMetric(lossless.mbps, "lossless-MB/s")
		b.ReportMetric(lossy.mbps, "lossy-MB/s")
	})
}

// natWindows is how many windows of the bench duration each throughput in
// the NAT labs is the median of: one window on a shared 2-core machine is
// at the mercy of whatever else runs.
const natWindows = 3

// startNATLab runs a server on a public host, an agent and a CLI each
// behind an easy NAT, and a source on the agent's loopback that every port
// forward downloads from.
func startNATLab(t testing.TB, lab *natlab.Lab, bin string) (dep *harness.Deployment, agent, cli *natlab.Host, src *server) {
	srvH := lab.AddHost("server", natlab.Public)
	agent = lab.AddHost("agent", natlab.EasyNAT)
	cli = lab.AddHost("client", natlab.EasyNAT)
	on := func(h *natlab.Host) harness.Tether {
		return harness.Tether{Bin: bin, Command: h.Command, Host: h.Name()}
	}
	ip := srvH.IP().String()
	// The processes' cleanups come after the lab's, so that they run
	// first: the processes stop before their namespaces go.
	srv := on(srvH).StartServerWith(t, harness.ServerOptions{Addr: ip + ":3000", STUN: []string{ip + ":3478"}, UDPRelay: ip + ":" + strconv.Itoa(natRelayPort)})
	dep = harness.StartDeployment(t, srv, harness.DeploymentOptions{Workspace: "bench", CLI: on(cli), Agent: on(agent)})
	ln, err := agent.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src = serve(ln, source)
	t.Cleanup(src.close)
	return dep, agent, cli, src
}

// TestNATDataGoesDirectQuickly: between two easy NATs, a port forward's
// data goes direct long before magicsock's own 5 s retry of a direct path,
// because the tunnel pings the candidate paths itself after a dial that
// reached the agent through the relay (tunnel/upgrade.go). Without that,
// two runs in three waited the 5 s.
func TestNATDataGoesDirectQuickly(t *testing.T) {
	lab := natlab.New(t) // skips unless root with ip and nft
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := harness.Build(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dep, _, cli, src := startNATLab(t, lab, bin)
	for run := range 3 {
		f, err := startForward(ctx, dep, cli, src.port())
		if err != nil {
			t.Fatal(err)
		}
		f.close()
		if f.upgrade > 2*time.Second {
			t.Errorf("run %d: the data went direct %v after its first byte, want well under magicsock's 5 s retry", run, f.upgrade)
		}
	}
}

func msList(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprintf("%.0f ms", millis(d))
	}
	return strings.Join(s, ", ")
}

// natForwardPort is the CLI's local port for port forwards, in its own
// namespace, where nothing else listens.
const natForwardPort = 15201

// forward is a `tether port-forward` on the CLI's host to the source on
// the agent's, with a download running and the path direct.
type forward struct {
	pf      *harness.Proc
	conn    net.Conn
	upgrade time.Duration // first byte to the direct path (0 if it came first)
	took    time.Duration // first byte until this side saw the direct path
}

func (f *forward) close() {
	f.conn.Close()
	f.pf.Stop()
}

// startForward starts a port forward, downloads through it until the
// library's log says the path is direct, and returns it still open.
func startForward(ctx context.Context, dep *harness.Deployment, cli *natlab.Host, srcPort int) (_ *forward, err error) {
	pf := dep.User.Start("port-forward", "port-forward", dep.Workspace,
		"--tcp", fmt.Sprintf("%d:%d", natForwardPort, srcPort), "--log-level", "debug")
	defer func() {
		if err != nil {
			pf.Stop()
		}
	}()
	pf.WaitLine(pressCtrlC)
	conn, err := cli.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", natForwardPort))
	if err != nil {
		return nil, err
	}
	f := &forward{pf: pf, conn: conn}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	conn.SetReadDeadline(time.Now().Add(firstByteTimeout))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return nil, fmt.Errorf("first byte: %w\nport-forward's log:\n%s", err, harness.Tail(pf.Output(), tailLines))
	}
	firstByteAt := time.Now()
	for !nowUsing.MatchString(pf.Output()) {
		if time.Since(firstByteAt) > 20*time.Second {
			return nil, fmt.Errorf("the port forward never went direct:\n%s", harness.Tail(pf.Output(), tailLines))
		}
		if err := drain(conn, 50*time.Millisecond); err != nil {
			return nil, fmt.Errorf("download, %.1f s after the first byte: %w\nport-forward's log:\n%s",
				time.Since(firstByteAt).Seconds(), err, harness.Tail(pf.Output(), tailLines))
		}
	}
	f.took = time.Since(firstByteAt)
	if m := nowUsingAt.FindStringSubmatch(pf.Output()); m != nil {
		if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			f.upgrade = max(at.Sub(firstByteAt), 0)
		}
	}
	return f, nil
}

// rate is a measured throughput and how it was measured.
type rate struct {
	mbps float64
	note string
}

// lossTransfer measures downloads through a port forward once its path is
// direct: without loss, and then, on the same connection and path, with
// 0.5% loss at both routers.
func lossTransfer(ctx context.Context, dep *harness.Deployment, agent, cli *natlab.Host, srcPort int, d time.Duration) (lossless, lossy rate, err error) {
	f, err := startForward(ctx, dep, cli, srcPort)
	if err != nil {
		return rate{}, rate{}, err
	}
	defer f.close()
	fail := func(what string, err error) (rate, rate, error) {
		return rate{}, rate{}, fmt.Errorf("%s: %w\nport-forward's log:\n%s", what, err, harness.Tail(f.pf.Output(), tailLines))
	}
	if err := drain(f.conn, time.Second); err != nil {
		return fail("warm-up", err)
	}
	before := len(nowUsing.FindAllString(f.pf.Output(), -1))
	// The relay cells' baseline, so measured the way they are.
	mbps, windows, err := receiveWindows(f.conn, d, natWindows)
	if err != nil {
		return fail("lossless", err)
	}
	lossless.mbps = mbps
	setLoss := func(permille int) error {
		for _, h := range []*natlab.Host{agent, cli} {
			if err := h.SetLoss(permille); err != nil {
				return err
			}
		}
		return nil
	}
	if err := setLoss(5); err != nil {
		return rate{}, rate{}, err
	}
	defer setLoss(0)
	// A second of loss first, for the congestion window to settle.
	if err := drain(f.conn, time.Second); err != nil {
		return fail("lossy warm-up", err)
	}
	mbps, lossyWindows, err := receiveWindows(f.conn, d, natWindows)
	if err != nil {
		return fail("lossy", err)
	}
	lossy.mbps = mbps
	changes := len(nowUsing.FindAllString(f.pf.Output(), -1)) - before
	common := fmt.Sprintf("port-forward down, one connection; direct %.1f s after its first byte (%s), %d path changes while measuring",
		f.took.Seconds(), magicsockPath(f.pf.Output()), changes)
	lossless.note = fmt.Sprintf("%s each, %s", d, ratesNote(windows)) + common
	lossy.note = fmt.Sprintf("%s each, %s", d, ratesNote(lossyWindows)) + common
	return lossless, lossy, nil
}

// nowUsingAt finds the time of the library's first "now using" log line.
var nowUsingAt = regexp.MustCompile(`time=(\S+) level=DEBUG msg="magicsock: disco: node \S+ \S+ now using`)

// upgradePingInterval is the resolution of the upgrade time.
const upgradePingInterval = 25 * time.Millisecond

// timeUpgrade runs `tether ping` from the CLI's host and returns the time
// from the command's start to its first pong, and from the first pong
// (usually relayed) to the first direct one.
func timeUpgrade(ctx context.Context, dep *harness.Deployment) (first, upgrade time.Duration, err error) {
	const within = 15 * time.Second
	n := int(within / upgradePingInterval)
	t0 := time.Now()
	p := dep.User.Start("ping", "ping", dep.Workspace, "-n", strconv.Itoa(n),
		"-i", upgradePingInterval.String(), "--output", "json")
	defer p.Stop()
	var firstAt time.Time
	deadline := time.After(within + harness.StartTimeout)
	for {
		select {
		case line := <-p.Lines():
			now := time.Now()
			var pong struct {
				Path string `json:"path"`
			}
			if json.Unmarshal([]byte(line), &pong) != nil || pong.Path == "timeout" {
				continue
			}
			if firstAt.IsZero() {
				firstAt = now
			}
			if pong.Path == "direct" {
				return firstAt.Sub(t0), now.Sub(firstAt), nil
			}
		case <-p.Done():
			return 0, 0, fmt.Errorf("ping ended without a direct pong (%v):\n%s", p.Err(), harness.Tail(p.Output(), tailLines))
		case <-deadline:
			return 0, 0, fmt.Errorf("no direct pong within %s:\n%s", within, harness.Tail(p.Output(), tailLines))
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}
