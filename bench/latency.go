package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/tetherdev/tether/internal/delayproxy"
	"github.com/tetherdev/tether/internal/harness"
)

// The latency part (issue 17): `tether ssh` far from the server. The CLI
// and the agent reach the server through a delay proxy (package
// delayproxy) that holds every byte for latencyDelays[i] in each
// direction, so that the API, coordination and the DERP relay cross a slow
// link. With one-way delay d the CLI is 2d from the server (a server
// round trip) and 4d from the agent through the relay (a relayed round
// trip); a direct path stays on loopback.
//
// It times `tether ssh --disable-direct WS -- true` (everything over the
// relay) to the end, and `tether ssh WS -- echo` (direct) to the first
// byte of its output, and counts each in round trips of its kind. One run
// per setting goes with --log-level debug, and its phase timeline (the
// CLI's component=timeline lines) goes into the note.
//
// 200 ms each way (relayed round trips of 800 ms) shows what is left
// beyond the goal's 400 ms: each round trip the connection still waits
// for counts double there.
var latencyDelays = []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}

// runLatency starts a deployment behind a delay proxy and measures.
func runLatency(ctx context.Context, cfg *config, res *results, dir string) error {
	p := newPart(ctx, "latency", dir, cfg.logf)
	defer p.close()
	return p.run(func() error {
		port, err := freePort()
		if err != nil {
			return err
		}
		serverAddr := fmt.Sprintf("127.0.0.1:%d", port)
		proxy, err := delayproxy.Listen("127.0.0.1:0", serverAddr)
		if err != nil {
			return err
		}
		p.Cleanup(func() { proxy.Close() })
		srv := harness.Tether{Bin: cfg.tether}.StartServerWith(p, harness.ServerOptions{
			Addr: serverAddr,
			Args: []string{"--access-url", "http://" + proxy.Addr()},
		})
		dep := harness.StartDeployment(p, srv, harness.DeploymentOptions{
			Workspace: "far",
			// Bash sources ~/.bashrc even for `bash -c CMD` when sshd runs
			// it (SSH_CLIENT set) at the first shell level, and a
			// developer's .bashrc may take seconds (root's on the bench VM
			// runs `pyenv init`: 2.6-4 s). A nested level keeps the
			// workspace's own shell start out of the figures, which are
			// Tether's.
			AgentEnv: []string{"SHLVL=1"},
		})
		l := &latency{cfg: cfg, res: res, dep: dep}
		for _, d := range latencyDelays {
			proxy.SetDelay(d)
			if err := l.measure(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

type latency struct {
	cfg *config
	res *results
	dep *harness.Deployment
}

// latencyRun is one timed command.
type latencyRun struct {
	firstByte, total time.Duration
	timeline         string // the phase lines, with --log-level debug
}

// measure times both commands at one-way delay d.
func (l *latency) measure(ctx context.Context, d time.Duration) error {
	relayedRTT, serverRTT := 4*d, 2*d
	// One run first, not counted and with the timeline: it warms the
	// page cache and whatever the CLI keeps between commands.
	relayed := []string{"ssh", "--disable-direct", l.dep.Workspace, "--", "true"}
	direct := []string{"ssh", l.dep.Workspace, "--", "echo", "x"}
	for _, c := range []struct {
		name string
		args []string
		rtt  time.Duration
		// firstByte: the figure is the time to the first byte of output,
		// else to the end.
		firstByte bool
		unit      string
	}{
		{fmt.Sprintf("latency/relayed/rtt=%dms", relayedRTT.Milliseconds()), relayed, relayedRTT, false, "relayed round trips"},
		{fmt.Sprintf("latency/direct/server-rtt=%dms", serverRTT.Milliseconds()), direct, serverRTT, true, "server round trips"},
	} {
		warm, err := l.run(ctx, c.args, true)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		var ds, fb []time.Duration
		for range l.cfg.latencyRuns {
			r, err := l.run(ctx, c.args, false)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ds = append(ds, r.total)
			fb = append(fb, r.firstByte)
		}
		figure := ds
		what := "to the end"
		if c.firstByte {
			figure = fb
			what = "to the first byte of output"
		}
		s := summarize(figure)
		note := fmt.Sprintf("`tether %s` %s, p50 of %d runs after 1 warm-up (min %.0f, max %.0f ms); proxy %v each way; timeline of the warm-up: %s",
			strings.Join(c.args, " "), what, s.N, millis(s.Min), millis(s.Max), d, warm.timeline)
		l.res.lower(c.name, millis(s.P50), "ms", note)
		if c.rtt > 0 {
			l.res.lower(c.name+"/round-trips", float64(s.P50)/float64(c.rtt), "RTT",
				fmt.Sprintf("p50 in %s of %v", c.unit, c.rtt))
		}
	}
	return nil
}

// timelineLine matches the CLI's phase lines (cli/timeline.go).
var timelineLine = regexp.MustCompile(`component=timeline .*`)

// run runs one command and times it: to its first byte of stdout and to
// its exit. With debug it logs at debug level and keeps the timeline.
func (l *latency) run(ctx context.Context, args []string, debug bool) (latencyRun, error) {
	if debug {
		args = append([]string{args[0], "--log-level", "debug"}, args[1:]...)
	}
	ctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
	defer cancel()
	cmd := l.dep.User.Cmd(ctx, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return latencyRun{}, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return latencyRun{}, err
	}
	var r latencyRun
	first := make([]byte, 1)
	if n, _ := stdout.Read(first); n > 0 {
		r.firstByte = time.Since(start)
	}
	io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	r.total = time.Since(start)
	if r.firstByte == 0 {
		r.firstByte = r.total
	}
	if err != nil {
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return r, fmt.Errorf("tether %s: exit %d: %s", strings.Join(args, " "), code, harness.Tail(stderr.String(), tailLines))
	}
	if debug {
		var lines []string
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if m := timelineLine.FindString(sc.Text()); m != "" {
				lines = append(lines, strings.TrimPrefix(m, "component=timeline "))
			}
		}
		r.timeline = strings.Join(lines, "; ")
		if r.timeline == "" {
			r.timeline = "(none logged)"
		}
	}
	return r, nil
}
