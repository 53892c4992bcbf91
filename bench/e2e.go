package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
)

// rttSize is the size of one request and one response in the latency test:
// small, like a keystroke or an RPC.
const rttSize = 64

// runPlainTCP measures the loopback baseline: the same transfer and round
// trips as through the tunnel, with nothing in between.
func runPlainTCP(ctx context.Context, cfg *config, res *results) error {
	ln, err := listenLoopback()
	if err != nil {
		return err
	}
	src := serve(ln, source)
	defer src.close()
	mbps, rates, err := measureDownload(ctx, dialTCP(ln.Addr().String()), 0, cfg.duration, cfg.runs)
	if err != nil {
		return fmt.Errorf("plain TCP transfer: %w", err)
	}
	res.higher("tcp/throughput", mbps, "MB/s", ratesNote(rates)+"loopback, one connection")

	eln, err := listenLoopback()
	if err != nil {
		return err
	}
	ech := serve(eln, echo)
	defer ech.close()
	conn, err := net.Dial("tcp", eln.Addr().String())
	if err != nil {
		return err
	}
	defer conn.Close()
	ds, err := roundTrips(conn, cfg.rttCount, rttSize, cfg.rttWarm)
	if err != nil {
		return fmt.Errorf("plain TCP round trips: %w", err)
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d × %d B", s.N, rttSize)
	res.lower("tcp/rtt-p50", micros(s.P50), "µs", note)
	res.lower("tcp/rtt-p99", micros(s.P99), "µs", note)

	// Again through two forwarding processes, as a port forward's
	// connection runs through the CLI and the agent.
	agentSide, err := startForwardProc(eln.Addr().String())
	if err != nil {
		return err
	}
	defer agentSide.close()
	cliSide, err := startForwardProc(agentSide.addr)
	if err != nil {
		return err
	}
	defer cliSide.close()
	fconn, err := net.Dial("tcp", cliSide.addr)
	if err != nil {
		return err
	}
	defer fconn.Close()
	ds, err = roundTrips(fconn, cfg.rttCount, rttSize, cfg.rttWarm)
	if err != nil {
		return fmt.Errorf("plain TCP round trips through two forwarders: %w", err)
	}
	s = summarize(ds)
	note = fmt.Sprintf("%d × %d B, through two forwarding processes (as a port forward runs through the CLI and the agent)", s.N, rttSize)
	res.lower("tcp/rtt-forwarded-p50", micros(s.P50), "µs", note)
	res.lower("tcp/rtt-forwarded-p99", micros(s.P99), "µs", note)
	return nil
}

// e2e runs the parts that need a real server, agent and CLI on loopback,
// sharing one deployment. Each part runs its steps through p.run.
type e2e struct {
	cfg *config
	res *results
	p   *part
	dep *harness.Deployment
}

func startE2E(ctx context.Context, cfg *config, res *results, dir string) (*e2e, error) {
	e := &e2e{cfg: cfg, res: res, p: newPart(ctx, "e2e", dir, cfg.logf)}
	err := e.p.run(func() error {
		// The harness's default ports are free ones: the server never
		// collides with one that runs on this machine (or in another
		// helper's test).
		srv := harness.Tether{Bin: cfg.tether}.StartServer(e.p)
		e.dep = harness.StartDeployment(e.p, srv, harness.DeploymentOptions{Workspace: "bench"})
		return nil
	})
	if err != nil {
		e.p.close()
		return nil, err
	}
	return e, nil
}

func (e *e2e) close() { e.p.close() }

// tailLines is how much of a process's output an error of the bench
// shows.
const tailLines = 20

// cli runs a CLI command of u within ctx (and CommandTimeout) and returns
// its stdout and stderr. A failure is an error for the caller to count,
// not the end of the part.
func cli(ctx context.Context, u *harness.User, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
	defer cancel()
	r, err := u.Exec(ctx, "", args...)
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("tether %s: exit status %d", strings.Join(args, " "), r.Code)
	}
	if err != nil {
		return r.Stdout, r.Stderr, fmt.Errorf("%w: %s", err, harness.Tail(strings.TrimSpace(r.Stderr), tailLines))
	}
	return r.Stdout, r.Stderr, nil
}

// speedResult is one `tether speedtest` run.
type speedResult struct {
	warm      time.Duration
	steady    float64   // MB/s after warm
	whole     float64   // MB/s over the whole window, as the command reports it
	pathStart string    // the path the command reported (a ping at its start)
	logPath   string    // what the library's log says of the direct path
	intervals []float64 // MB/s of each interval
}

// runSpeedtest runs one `tether speedtest` download of warm+d and returns
// the rate of its intervals after warm (the command reports one interval a
// second, so warm is rounded up to whole seconds). Each run is a fresh
// tunnel that starts relayed, and the path goes direct during the first
// second where it can: only the steady part compares with a transfer on an
// settled path.
func runSpeedtest(ctx context.Context, dep *harness.Deployment, warm, d time.Duration, extra ...string) (speedResult, error) {
	warm = warm.Round(time.Second)
	if warm == 0 {
		warm = time.Second
	}
	d = max(d.Round(time.Second), time.Second)
	args := append([]string{"speedtest", dep.Workspace, "-t", (warm + d).String(),
		"--direction", "down", "--output", "json", "--log-level", "debug"}, extra...)
	// A bound of its own: a run that hangs must not stall the bench.
	ctx, cancel := context.WithTimeout(ctx, warm+d+20*time.Second)
	defer cancel()
	out, logs, err := cli(ctx, dep.User, args...)
	if err != nil {
		return speedResult{}, err
	}
	var r tether.SpeedtestOutput
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return speedResult{}, fmt.Errorf("speedtest printed %q: %w", out, err)
	}
	pathStart := r.Path
	if r.DERPRegion != "" {
		pathStart = "DERP(" + r.DERPRegion + ")"
	}
	res := speedResult{warm: warm, whole: r.ThroughputBytesPerS / 1e6, pathStart: pathStart, logPath: magicsockPath(logs)}
	var bytes int64
	var span float64 // seconds
	for _, iv := range r.Intervals {
		if iv.EndS > iv.StartS {
			res.intervals = append(res.intervals, iv.ThroughputBytesPerS/1e6)
		}
		if iv.StartS >= warm.Seconds() {
			bytes += iv.Bytes
			span += iv.EndS - iv.StartS
		}
	}
	if span <= 0 {
		return speedResult{}, fmt.Errorf("speedtest reported no interval after %s: %s", warm, out)
	}
	res.steady = float64(bytes) / span / 1e6
	return res, nil
}

func (s speedResult) note() string {
	ivs := make([]string, len(s.intervals))
	for i, v := range s.intervals {
		ivs[i] = fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("down, after %s warm-up (each second: %s MB/s); path at start %s; %s",
		s.warm, strings.Join(ivs, ", "), s.pathStart, s.logPath)
}

// speedtest runs `tether speedtest` downloads and records the median
// steady throughput of runs.
func (e *e2e) speedtest(ctx context.Context, name string, runs int, extra ...string) error {
	var all []speedResult
	var rates []float64
	failures := 0
	for len(all) < runs {
		r, err := runSpeedtest(ctx, e.dep, e.cfg.warm, e.cfg.duration, extra...)
		if err != nil {
			// Counted and shown, and tried again once: one hung run
			// should not cost the figure, nor go unseen.
			failures++
			e.cfg.logf("%s run failed: %s", name, firstLine(err.Error()))
			if failures > 1 || ctx.Err() != nil {
				return err
			}
			continue
		}
		all = append(all, r)
		rates = append(rates, r.steady)
	}
	m := median(rates)
	note := all[0].note()
	if runs > 1 {
		note = fmt.Sprintf("median of %d; first run: %s", runs, note)
	}
	if failures > 0 {
		note = fmt.Sprintf("%d RUN FAILED (%s); %s", failures, "see stderr", note)
	}
	e.res.higher(name, m, "MB/s", note)
	return nil
}

var pressCtrlC = regexp.MustCompile(`Press Ctrl\+C`)

// portForward measures a download and round trips through `tether
// port-forward`, to a source and an echo server on loopback standing in
// for the workspace's services.
func (e *e2e) portForward(ctx context.Context, name string, extra ...string) error {
	sln, err := listenLoopback()
	if err != nil {
		return err
	}
	src := serve(sln, source)
	defer src.close()
	eln, err := listenLoopback()
	if err != nil {
		return err
	}
	ech := serve(eln, echo)
	defer ech.close()
	lsrc, err := freePort()
	if err != nil {
		return err
	}
	lecho, err := freePort()
	if err != nil {
		return err
	}
	args := append([]string{"port-forward", e.dep.Workspace,
		"--tcp", fmt.Sprintf("%d:%d", lsrc, src.port()),
		"--tcp", fmt.Sprintf("%d:%d", lecho, ech.port()),
		// The library's logs say when magicsock picks a direct path.
		"--log-level", "debug"}, extra...)
	pf := e.dep.User.Start(name, args...)
	defer pf.Stop()
	pf.WaitLine(pressCtrlC)

	// Warm-up: the first connection sets up the tunnel, and data makes the
	// path go direct where it can.
	mbps, rates, err := measureDownload(ctx, dialTCP(fmt.Sprintf("127.0.0.1:%d", lsrc)), e.cfg.warm, e.cfg.duration, e.cfg.runs)
	if err != nil {
		return fmt.Errorf("%s transfer: %w\n%s", name, err, harness.Tail(pf.Output(), tailLines))
	}
	e.res.higher(name, mbps, "MB/s", ratesNote(rates)+"down, one connection; "+magicsockPath(pf.Output()))

	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lecho))
	if err != nil {
		return err
	}
	defer conn.Close()
	ds, err := roundTrips(conn, e.cfg.rttCount, rttSize, e.cfg.rttWarm)
	if err != nil {
		return fmt.Errorf("%s round trips: %w", name, err)
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d × %d B", s.N, rttSize)
	e.res.lower(name+"/rtt-p50", micros(s.P50), "µs", note)
	e.res.lower(name+"/rtt-p99", micros(s.P99), "µs", note)
	return nil
}

var nowUsing = regexp.MustCompile(`magicsock: disco: node \S+ \S+ now using (\S+)`)

// magicsockPath says which direct path the library's logs show, if any.
func magicsockPath(logs string) string {
	m := nowUsing.FindAllStringSubmatch(logs, -1)
	if m == nil {
		return "no direct path in the CLI's log"
	}
	return "CLI log: direct via " + m[len(m)-1][1]
}

// ssh times `tether ssh WS -- true` from start to exit: login to the
// server, tunnel setup, SSH handshake, the command, and teardown.
func (e *e2e) ssh(ctx context.Context, runs int) error {
	// One run first, not counted: it fills the page cache and the agent's
	// first-session state, which every later user of a workspace finds warm.
	if _, _, err := cli(ctx, e.dep.User, "ssh", e.dep.Workspace, "--", "true"); err != nil {
		return err
	}
	var ds []time.Duration
	for range runs {
		t0 := time.Now()
		if _, _, err := cli(ctx, e.dep.User, "ssh", e.dep.Workspace, "--", "true"); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d runs after 1 warm-up; max %.0f ms", s.N, millis(s.Max))
	e.res.lower("ssh/true-p50", millis(s.P50), "ms", note)
	e.res.lower("ssh/true-p99", millis(s.P99), "ms", note)
	return nil
}
