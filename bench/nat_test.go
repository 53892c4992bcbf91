package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

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
		root, err := moduleRoot()
		if err != nil {
			b.Fatal(err)
		}
		if bin, err = buildTether(ctx, root, b.TempDir()); err != nil {
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

	srv := lab.AddHost("server", natlab.Public)
	agent := lab.AddHost("agent", natlab.EasyNAT)
	cli := lab.AddHost("client", natlab.EasyNAT)
	ip := srv.IP().String()
	// Registered after the lab, so that the processes stop before their
	// namespaces go.
	dep, err := startDeployment(ctx, deploymentOptions{
		Bin:        bin,
		Dir:        b.TempDir(),
		ServerArgs: []string{"--http-address", ip + ":3000", "--derp-server-stun-addresses", ip + ":3478"},
		Server:     srv.Command,
		Agent:      agent.Command,
		CLI:        cli.Command,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(dep.close)

	b.Run("upgrade", func(b *testing.B) {
		var firsts, ups []time.Duration
		for range runs {
			first, up, err := timeUpgrade(ctx, dep)
			if err != nil {
				b.Fatal(err)
			}
			firsts = append(firsts, first)
			ups = append(ups, up)
		}
		f, u := summarize(firsts), summarize(ups)
		b.ReportMetric(millis(f.P50), "first-pong-p50-ms")
		b.ReportMetric(millis(u.P50), "upgrade-p50-ms")
		b.ReportMetric(millis(u.Max), "upgrade-max-ms")
		note := fmt.Sprintf("tether ping -i %s, %d runs; max %.0f ms", upgradePingInterval, u.N, millis(u.Max))
		b.Logf("%s nat/upgrade-p50 %s", natNote, note)
		b.Logf("%s nat/first-pong-p50 CLI start to first pong, %d runs", natNote, f.N)
	})

	b.Run("loss", func(b *testing.B) {
		lossless, lossy, direct, note, err := lossTransfer(ctx, dep, agent, cli, duration)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s nat/lossless %s", natNote, note)
		b.Logf("%s nat/lossy 0.5%% loss at each router, same connection; %s", natNote, note)
		b.Logf("%s nat/upgrade-data port-forward: from its first connection to the library's direct path, data flowing (±50 ms)", natNote)
		b.ReportMetric(millis(direct), "upgrade-data-ms")
		b.ReportMetric(lossless, "lossless-MB/s")
		b.ReportMetric(lossy, "lossy-MB/s")
	})
}

// natForwardPort is the CLI's local port for the loss test, in its own
// namespace, where nothing else listens.
const natForwardPort = 15201

// lossTransfer measures downloads through `tether port-forward` from a
// source on the agent's loopback to the CLI's host: once the tunnel is
// direct, without loss and then, on the same connection and path, with 0.5%
// loss at both routers.
func lossTransfer(ctx context.Context, dep *deployment, agent, cli *natlab.Host, d time.Duration) (lossless, lossy float64, direct time.Duration, note string, err error) {
	ln, err := agent.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, 0, "", err
	}
	src := serve(ln, source)
	defer src.close()
	pf, err := dep.startCLI("port-forward", "port-forward", dep.Workspace,
		"--tcp", fmt.Sprintf("%d:%d", natForwardPort, src.port()), "--log-level", "debug")
	if err != nil {
		return 0, 0, 0, "", err
	}
	defer pf.stop()
	if _, err := pf.waitLine(ctx, pressCtrlC); err != nil {
		return 0, 0, 0, "", err
	}
	conn, err := cli.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", natForwardPort))
	if err != nil {
		return 0, 0, 0, "", err
	}
	defer conn.Close()

	// Data until the library says the path is direct (about 3 s between
	// two easy NATs), so that loss is measured on the path it is about.
	t0 := time.Now()
	for !nowUsing.MatchString(pf.output()) {
		if time.Since(t0) > 20*time.Second {
			return 0, 0, 0, "", fmt.Errorf("the port forward never went direct:\n%s", tail(pf.output()))
		}
		if err := drain(conn, 50*time.Millisecond); err != nil {
			return 0, 0, 0, "", fmt.Errorf("warm-up: %w", err)
		}
	}
	direct = time.Since(t0)
	if err := drain(conn, time.Second); err != nil {
		return 0, 0, 0, "", fmt.Errorf("warm-up: %w", err)
	}
	before := len(nowUsing.FindAllString(pf.output(), -1))
	bps, err := receive(conn, d)
	if err != nil {
		return 0, 0, 0, "", fmt.Errorf("lossless: %w", err)
	}
	lossless = bps / 1e6
	setLoss := func(permille int) error {
		for _, h := range []*natlab.Host{agent, cli} {
			if err := h.SetLoss(permille); err != nil {
				return err
			}
		}
		return nil
	}
	if err := setLoss(5); err != nil {
		return 0, 0, 0, "", err
	}
	defer setLoss(0)
	// A second of loss first, for the congestion window to settle.
	if err := drain(conn, time.Second); err != nil {
		return 0, 0, 0, "", fmt.Errorf("lossy warm-up: %w", err)
	}
	bps, err = receive(conn, d)
	if err != nil {
		return 0, 0, 0, "", fmt.Errorf("lossy: %w", err)
	}
	lossy = bps / 1e6
	changes := len(nowUsing.FindAllString(pf.output(), -1)) - before
	note = fmt.Sprintf("port-forward down, one connection; direct after %.1f s of data (%s), %d path changes while measuring",
		direct.Seconds(), magicsockPath(pf.output()), changes)
	return lossless, lossy, direct, note, nil
}

// upgradePingInterval is the resolution of the upgrade time.
const upgradePingInterval = 25 * time.Millisecond

// timeUpgrade runs `tether ping` from the CLI's host and returns the time
// from the command's start to its first pong, and from the first pong
// (usually relayed) to the first direct one.
func timeUpgrade(ctx context.Context, dep *deployment) (first, upgrade time.Duration, err error) {
	const within = 15 * time.Second
	n := int(within / upgradePingInterval)
	t0 := time.Now()
	p, err := dep.startCLI("ping", "ping", dep.Workspace, "-n", strconv.Itoa(n),
		"-i", upgradePingInterval.String(), "--output", "json")
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	var firstAt time.Time
	deadline := time.After(within + startTimeout)
	for {
		select {
		case line := <-p.lines:
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
		case <-p.done:
			return 0, 0, fmt.Errorf("ping ended without a direct pong (%v):\n%s", p.err, tail(p.output()))
		case <-deadline:
			return 0, 0, fmt.Errorf("no direct pong within %s:\n%s", within, tail(p.output()))
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}
