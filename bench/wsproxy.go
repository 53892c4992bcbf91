package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/delayproxy"
	"github.com/tetherdev/tether/internal/harness"
)

// The workspace proxy part (issue 13): a browser far from the primary and
// near a proxy, the agent near the proxy. The links are user-space TCP
// delays (internal/delayproxy) that add a fixed time to every byte in each
// direction: browser↔primary +cfg.wsproxyPrimaryDelay each way,
// browser↔proxy +cfg.wsproxyProxyDelay each way; the agent, proxy and
// primary otherwise share loopback. The browser is this process, speaking
// the web terminal's protocol on its WebSocket as the page does: signed in
// at the primary, handed over to the proxy through the primary as a
// browser is, one keystroke at a time, timing each until its echo comes
// back.
//
// Figures:
//   - echo p50 via the proxy and via the primary, in the same run, and the
//     goal's bound: browser↔proxy RTT (the latency endpoint's p50 through
//     the delay) + proxy↔agent RTT (`tether ping` p50 from this host,
//     where the proxy runs) + 10 ms;
//   - cfg.wsproxySessions concurrent terminals on the proxy without the
//     delay, all open and their shells idle at a prompt before any types,
//     each typing as a person does (humanTypist), echo p99: the goal's
//     figure, against one terminal's echo p99 on the proxy without the
//     delay (its no-delay baseline), in the same run;
//   - the same terminals all typing a key every wsproxyKeyInterval at
//     once, a stress figure beyond the goal's model.
//
// Every keystroke goes out when its typist types it, whether or not the
// echoes of the keys before it are back (an open loop, as people type
// ahead), and is timed until its own echo: a slow proxy is not measured
// by fewer, later keys.
//
// The shells are bash login shells of the user running the bench. As
// root (the machines this runs on), the agent runs in a mount namespace of
// its own with an empty directory over the user's home (cleanHomeAgent):
// the shells run /etc/profile but not the user's startup files, which on
// a developer's machine can cost seconds of CPU each (pyenv's init) and
// run a program at every prompt, and would be measured instead of the
// proxy. Each figure's note says which shells ran.

// wsproxyKeyInterval paces every terminal's keystrokes in the stress
// phase, and the single terminals' (whose echo does not depend on the
// pace: one key's echo is back long before the next); the webterm part
// types at it too.
const wsproxyKeyInterval = 100 * time.Millisecond

// wsproxyOutputLine is the length of the line each terminal prints before
// it types.
const wsproxyOutputLine = 1000

// procMemory is the resident memory of process pid and its peak, in MiB
// (zero where /proc does not say).
func procMemory(pid int) (rss, peak float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// wsproxyBaselineKeys is how many keystrokes the no-delay baseline times:
// more than a terminal of the load types, so that its p99 is not one
// unlucky key.
const wsproxyBaselineKeys = 300

// wsproxyEchoTimeout bounds one keystroke's wait for its echo.
const wsproxyEchoTimeout = 30 * time.Second

func runWSProxy(ctx context.Context, cfg *config, res *results, dir string) error {
	p := newPart(ctx, "wsproxy", dir, cfg.logf)
	defer p.close()
	return p.run(func() error { return wsproxyBench(ctx, cfg, res, p) })
}

func wsproxyBench(ctx context.Context, cfg *config, res *results, p *part) error {
	x := harness.Tether{Bin: cfg.tether}
	primaryAddr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	farFront, err := startDelayFront(primaryAddr, cfg.wsproxyPrimaryDelay)
	if err != nil {
		return err
	}
	defer farFront.Close()
	srv := x.StartServerWith(p, harness.ServerOptions{Addr: primaryAddr, Args: []string{"--access-url", "http://" + farFront.Addr()}})
	// A web terminal is a login shell. Without a clean home it runs the
	// user's profile: where that runs pyenv, each shell's `pyenv rehash`
	// takes a lock that the others wait up to a minute for, and one
	// killed while holding it stalls every later shell of the machine's
	// user for a minute; the shells then try it once.
	agent, shells, err := cleanHomeAgent(x, p.TempDir())
	if err != nil {
		return err
	}
	agentEnv := []string{"PYENV_REHASH_TIMEOUT=0"}
	var prof profiler
	var proxyArgs []string
	if cfg.wsproxyProfile != "" {
		if prof, err = newProfiler(cfg.wsproxyProfile); err != nil {
			return err
		}
		agentEnv = append(agentEnv, "TETHER_AGENT_PPROF_ADDRESS="+prof["agent"])
		proxyArgs = append(proxyArgs, "--pprof-address", prof["proxy"])
	}
	dep := harness.StartDeployment(p, srv, harness.DeploymentOptions{Workspace: "bench", Agent: agent, AgentEnv: agentEnv})

	proxyAddr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	nearFront, err := startDelayFront(proxyAddr, cfg.wsproxyProxyDelay)
	if err != nil {
		return err
	}
	defer nearFront.Close()
	_, nearPort, _ := net.SplitHostPort(nearFront.Addr())
	_, proxyPort, _ := net.SplitHostPort(proxyAddr)
	// The proxy at localhost and the primary at 127.0.0.1: a browser
	// keeps their cookies apart.
	proxyURL := "http://localhost:" + nearPort
	token := dep.User.CreateWSProxy("edge")
	proxy := x.StartWSProxy(p, srv.URL, token, append([]string{"--http-address", proxyAddr, "--access-url", proxyURL}, proxyArgs...)...)
	harness.WaitFor(p, harness.StatusTimeout, "the proxy healthy", func() bool {
		var ps []struct {
			Name    string `json:"name"`
			Healthy bool   `json:"healthy"`
		}
		out := dep.User.Must("wsproxy", "ls", "--output", "json")
		return json.Unmarshal([]byte(out), &ps) == nil && len(ps) == 1 && ps[0].Healthy
	})

	browser := loopbackBrowser()
	if err := browserSignIn(ctx, browser, srv.URL, harness.AdminName, harness.AdminPassword); err != nil {
		return err
	}
	terminalPage := proxyURL + "/@" + harness.AdminName + "/bench/terminal"
	if final, err := browserGet(ctx, browser, terminalPage); err != nil {
		return err
	} else if final != terminalPage {
		return fmt.Errorf("the terminal page through the proxy ended at %s, want %s", final, terminalPage)
	}

	proxyRTT, err := latencyP50(ctx, browser, proxyURL, 20)
	if err != nil {
		return err
	}
	primaryRTT, err := latencyP50(ctx, browser, srv.URL, 20)
	if err != nil {
		return err
	}
	agentRTT, err := pingP50(dep.User, "bench", 20)
	if err != nil {
		return err
	}
	goal := proxyRTT + agentRTT + 10*time.Millisecond
	ptyPath := "/api/v2/workspaces/" + harness.AdminName + "/bench/pty"
	viaProxy := terminalTarget{ws: "ws://localhost:" + nearPort + ptyPath, origin: proxyURL}
	viaPrimary := terminalTarget{ws: strings.Replace(srv.URL, "http://", "ws://", 1) + ptyPath, origin: srv.URL}
	// The proxy without the delay: its own listener, under its access
	// URL's name.
	direct := terminalTarget{ws: "ws://localhost:" + proxyPort + ptyPath, origin: proxyURL, host: "localhost:" + nearPort}

	keys := cfg.wsproxyKeys
	steady := func() typist { return steadyTypist(wsproxyKeyInterval) }
	proxyEchoes, err := typeAndTime(ctx, browser, viaProxy, keys, steady(), nil)
	if err != nil {
		return fmt.Errorf("terminal via the proxy: %w", err)
	}
	primaryEchoes, err := typeAndTime(ctx, browser, viaPrimary, keys, steady(), nil)
	if err != nil {
		return fmt.Errorf("terminal via the primary: %w", err)
	}
	sp, spr := summarize(proxyEchoes), summarize(primaryEchoes)
	links := fmt.Sprintf("browser↔primary +%s each way, browser↔proxy +%s each way", cfg.wsproxyPrimaryDelay, cfg.wsproxyProxyDelay)
	res.lower("wsproxy/echo-goal", millis(goal), "ms", fmt.Sprintf("browser↔proxy RTT %.1f ms + proxy↔agent RTT %.2f ms + 10 ms (browser↔primary RTT %.1f ms); %s",
		millis(proxyRTT), millis(agentRTT), millis(primaryRTT), links))
	res.lower("wsproxy/echo-proxy-p50", millis(sp.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.1f ms; %s", sp.N, millis(sp.P99), links))
	res.lower("wsproxy/echo-primary-p50", millis(spr.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.1f ms; %s", spr.N, millis(spr.P99), links))

	base, err := typeAndTime(ctx, browser, direct, wsproxyBaselineKeys, steady(), nil)
	if err != nil {
		return fmt.Errorf("terminal on the proxy without delay: %w", err)
	}
	sb := summarize(base)
	res.lower("wsproxy/baseline-echo-p99", millis(sb.P99), "ms", fmt.Sprintf("1 terminal on the proxy, no delay, %d keystrokes, p50 %.2f ms; %s", sb.N, millis(sb.P50), shells))

	n := cfg.wsproxySessions
	human, err := typeConcurrently(ctx, cfg, prof.phase("human"), proxy.Cmd.Process.Pid, browser, direct, n, keys, func(i int) typist { return humanTypist(rand.New(rand.NewPCG(uint64(i), 13))) })
	if err != nil {
		return err
	}
	res.lower("wsproxy/proxy-rss", human.proxyRSS, "MiB", fmt.Sprintf("the proxy's resident memory with %d terminals open and idle, each having printed a line of %d bytes (peak %.0f MiB)", n, wsproxyOutputLine, human.proxyPeak))
	sh := summarize(human.echoes)
	res.lower("wsproxy/concurrent-echo-p99", millis(sh.P99), "ms", fmt.Sprintf("%d terminals on the proxy, no delay, each typing as a person (%s), %d keystrokes each, %d in all in %.0f s (%.0f a second); p50 %.1f ms, max %.0f ms; load average %s before, %s after; %s",
		n, humanTypingModel, keys, sh.N, human.wall.Seconds(), float64(sh.N)/human.wall.Seconds(), millis(sh.P50), millis(sh.Max), human.loadBefore, human.loadAfter, shells))

	stress, err := typeConcurrently(ctx, cfg, prof.phase("stress"), proxy.Cmd.Process.Pid, browser, direct, n, keys, func(int) typist { return steady() })
	if err != nil {
		return err
	}
	ss := summarize(stress.echoes)
	res.lower("wsproxy/stress-echo-p99", millis(ss.P99), "ms", fmt.Sprintf("%d terminals on the proxy, no delay, all typing a key every %s (%d a second), %d keystrokes each, %d in all in %.0f s; p50 %.1f ms, max %.0f ms; load average %s before, %s after; %s",
		n, wsproxyKeyInterval, int(float64(n)*float64(time.Second)/float64(wsproxyKeyInterval)), keys, ss.N, stress.wall.Seconds(), millis(ss.P50), millis(ss.Max), stress.loadBefore, stress.loadAfter, shells))
	return nil
}

// concurrentRun is what typeConcurrently saw.
type concurrentRun struct {
	echoes                []time.Duration
	wall                  time.Duration // from the first key due to the last echo
	loadBefore, loadAfter string        // the machine's 1-minute load average
	proxyRSS, proxyPeak   float64       // the proxy's memory once all are open, MiB
}

// typeConcurrently opens n terminals at t, waits until every one's shell
// is idle at its prompt, then has each type keys keystrokes as
// typistFor(i) paces them, all at once.
func typeConcurrently(ctx context.Context, cfg *config, profile func(context.Context) error, proxyPID int, browser *http.Client, t terminalTarget, n, keys int, typistFor func(i int) typist) (concurrentRun, error) {
	cfg.logf("wsproxy: %d terminals at once", n)
	var (
		mu      sync.Mutex
		run     concurrentRun
		firstEr error
		wg      sync.WaitGroup
	)
	// Every terminal opens its shell first; then all type at once.
	var opened sync.WaitGroup
	opened.Add(n)
	allOpen := make(chan struct{})
	go func() { opened.Wait(); close(allOpen) }()
	for i := range n {
		wg.Go(func() {
			var once sync.Once
			open := func() { once.Do(opened.Done) }
			defer open() // a terminal that fails to open counts as opened
			ds, err := typeAndTime(ctx, browser, t, keys, typistFor(i), func() {
				open()
				<-allOpen
			})
			mu.Lock()
			defer mu.Unlock()
			run.echoes = append(run.echoes, ds...)
			if err != nil && firstEr == nil {
				firstEr = err
			}
		})
	}
	<-allOpen
	run.proxyRSS, run.proxyPeak = procMemory(proxyPID)
	run.loadBefore = loadAverage()
	start := time.Now()
	cfg.logf("wsproxy: %d terminals open, typing", n)
	pctx, stopProfile := context.WithCancel(ctx)
	profiled := make(chan error, 1)
	go func() { profiled <- profile(pctx) }()
	wg.Wait()
	stopProfile()
	if err := <-profiled; err != nil {
		cfg.logf("wsproxy: profile: %v", err)
	}
	run.wall = time.Since(start)
	run.loadAfter = loadAverage()
	if firstEr != nil {
		return run, fmt.Errorf("%d terminals at once: %w", n, firstEr)
	}
	return run, nil
}

// loadAverage is the machine's 1-minute load average, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// A typist paces one terminal's keystrokes: each call says how long after
// the previous key the next is typed, and whether Enter ends a burst first
// (a short command runs; not timed).
type typist func() (wait time.Duration, enter bool)

// steadyTypist types a key every interval, and runs a command every 40
// keys, to keep the line short.
func steadyTypist(interval time.Duration) typist {
	i := 0
	return func() (time.Duration, bool) {
		i++
		return interval, i > 1 && i%40 == 1
	}
}

// humanTypingModel says what humanTypist does, for the figures' notes.
const humanTypingModel = "bursts of 5–20 keys at 5–10 keys/s, Enter, then 0.5–3 s of reading: 3.6 keys/s on average"

// humanTypist types as a person at a terminal does: a burst (a word or a
// short command line, 5 to 20 keys, 12.5 on average) at 5 to 10 keys a
// second (100 to 200 ms apart: a fluent typist's pace within a word, 60
// to 120 words a minute), then Enter, and a pause of 0.5 to 3 s to read
// the output and think before the next. That averages 12.5 keys in
// 1.7 + 1.75 s, 3.6 keys a second; 200 such people send the proxy about
// 720 keystrokes a second. People who hold a terminal open mostly read or
// wait, so this is a busy team rather than an idle one.
func humanTypist(r *rand.Rand) typist {
	left := 0 // keys left in the current burst
	return func() (time.Duration, bool) {
		if left > 0 {
			left--
			return 100*time.Millisecond + time.Duration(r.Int64N(int64(100*time.Millisecond))), false
		}
		left = 5 + r.IntN(16) - 1
		return 500*time.Millisecond + time.Duration(r.Int64N(int64(2500*time.Millisecond))), true
	}
}

// terminalTarget is a web terminal's WebSocket and the page origin that
// opens it.
// host, if set, is the Host the request names (the proxy's access URL's,
// when the bench reaches the proxy past its delay).
type terminalTarget struct{ ws, origin, host string }

// typeAndTime opens a fresh terminal session at t, waits for its shell,
// calls opened (if not nil: it may wait for the other terminals), and
// types n keystrokes as ty paces them, after a random start within a
// second so that terminals type out of step. Each is timed from when it
// was sent (when it was due, unless the bench itself was late) until its
// echo arrives.
func typeAndTime(ctx context.Context, browser *http.Client, t terminalTarget, n int, ty typist, opened func()) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*(3*time.Second+wsproxyEchoTimeout))
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, t.ws+"?reconnect="+uuid.NewString()+"&height=24&width=80",
		// Browsers offer compression (permessage-deflate) on every
		// WebSocket; the server chooses whether to use it.
		&websocket.DialOptions{HTTPClient: browser, HTTPHeader: http.Header{"Origin": {t.origin}}, Host: t.host,
			CompressionMode: websocket.CompressionContextTakeover})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("open the terminal: %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("open the terminal: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	out := make(chan string, 64)
	readErr := make(chan error, 1)
	go func() {
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				readErr <- err
				close(out)
				return
			}
			out <- string(msg)
		}
	}()
	send := func(s string) error {
		b, _ := json.Marshal(tether.TerminalInput{Data: &s})
		return conn.Write(ctx, websocket.MessageText, b)
	}
	await := func(want string) error {
		var seen strings.Builder
		for !strings.Contains(seen.String(), want) {
			select {
			case s, ok := <-out:
				if !ok {
					return fmt.Errorf("the terminal closed before %q: %w", want, <-readErr)
				}
				seen.WriteString(s)
			case <-ctx.Done():
				return fmt.Errorf("no %q from the terminal: %w", want, ctx.Err())
			}
		}
		return nil
	}
	// The shell is up once it runs a command. Its prompt then has no
	// lowercase letter, so that no prompt passes for a keystroke's echo,
	// and no prompt hook of the user's profile (pyenv's runs a program at
	// every prompt): the figures are the proxy's, not the profile's.
	// A line as long as a directory listing's comes first, as in any
	// real session: output that long is what the WebSocket compresses.
	if err := send(fmt.Sprintf("PS1='> '; unset PROMPT_COMMAND; printf '%%0%dd\\n' 0; echo READY-$((20+22))\r", wsproxyOutputLine-1)); err != nil {
		return nil, err
	}
	if err := await("READY-42"); err != nil {
		return nil, err
	}
	if opened != nil {
		opened()
	}
	// Typed characters echo one by one at the end of the line, and the
	// only lowercase letters in the output while a line is typed are
	// those echoes: each is matched, in order, to the key it echoes. Keys
	// go out when due whether or not the echoes of the keys before them
	// are back, as a person types ahead (an open loop: a slow echo does
	// not slow the typing, and so hides nothing). Enter (after a line
	// kill, Ctrl-U) waits for the line's echoes, runs a short command and
	// starts a fresh line; it is not timed.
	const letters = "abcdefghijklmnopqrstuvwxyz"
	type sent struct {
		c  byte
		at time.Time
	}
	var inflight []sent
	ds := make([]time.Duration, 0, n)
	var esc escapes
	consume := func(s string) error {
		now := time.Now()
		for i := 0; i < len(s); i++ {
			if esc.skip(s[i]) || s[i] < 'a' || s[i] > 'z' {
				continue
			}
			if len(inflight) == 0 || inflight[0].c != s[i] {
				return fmt.Errorf("the terminal echoed %q, not the next key typed (%d keys in flight): %q", s[i], len(inflight), s)
			}
			ds = append(ds, now.Sub(inflight[0].at))
			inflight = inflight[1:]
		}
		return nil
	}
	next := func() error {
		select {
		case s, ok := <-out:
			if !ok {
				return fmt.Errorf("the terminal closed with %d keys unechoed: %w", len(inflight), <-readErr)
			}
			return consume(s)
		case <-ctx.Done():
			return fmt.Errorf("%d keys unechoed: %w", len(inflight), ctx.Err())
		}
	}
	drain := func() error {
		for len(inflight) > 0 {
			if err := next(); err != nil {
				return err
			}
		}
		return nil
	}
	due := time.Now().Add(rand.N(time.Second))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range n {
		wait, enter := ty()
		if i > 0 {
			due = due.Add(wait)
		}
		if enter && i > 0 {
			if err := drain(); err != nil {
				return ds, err
			}
			if err := send("\x15echo K$((3+4))K\r"); err != nil {
				return ds, err
			}
			if err := await("K7K"); err != nil {
				return ds, err
			}
			// The command is not timed, nor is its lateness.
			if now := time.Now(); due.Before(now) {
				due = now
			}
		}
		timer.Reset(time.Until(due))
		for waiting := true; waiting; {
			select {
			case <-timer.C:
				waiting = false
			case s, ok := <-out:
				if !ok {
					return ds, fmt.Errorf("the terminal closed with %d keys unechoed: %w", len(inflight), <-readErr)
				}
				if err := consume(s); err != nil {
					return ds, err
				}
			case <-ctx.Done():
				return ds, ctx.Err()
			}
		}
		c := letters[i%len(letters)]
		inflight = append(inflight, sent{c: c, at: time.Now()})
		if err := send(string(c)); err != nil {
			return ds, err
		}
	}
	if err := drain(); err != nil {
		return ds, err
	}
	conn.Close(websocket.StatusNormalClosure, "")
	return ds, nil
}

// escapes follows the terminal's escape sequences through its output, so
// that their letters (bracketed paste's "\x1b[?2004h") are not taken for
// echoes. The zero value is outside any sequence.
type escapes struct{ state byte }

// Its states.
const (
	escNone byte = iota
	escStart
	escCSI // ESC [ ... until a final byte
	escOSC // ESC ] ... until BEL or ESC \
)

// skip reports whether b belongs to an escape sequence.
func (e *escapes) skip(b byte) bool {
	switch e.state {
	case escStart:
		switch b {
		case '[':
			e.state = escCSI
		case ']':
			e.state = escOSC
		default:
			e.state = escNone // a two-byte sequence
		}
		return true
	case escCSI:
		if b >= 0x40 && b <= 0x7e {
			e.state = escNone
		}
		return true
	case escOSC:
		if b == 0x07 || b == '\\' {
			e.state = escNone
		}
		return true
	}
	if b == 0x1b {
		e.state = escStart
		return true
	}
	return false
}

// latencyP50 times n requests to the latency endpoint at base (the
// dashboard's own measure of a region) and returns their median.
func latencyP50(ctx context.Context, c *http.Client, base string, n int) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		req, err := http.NewRequestWithContext(ctx, "GET", base+tether.LatencyPath, nil)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			return 0, fmt.Errorf("latency of %s: %w", base, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ds = append(ds, time.Since(t0))
	}
	return summarize(ds).P50, nil
}

// pingP50 is the median of n `tether ping` round trips to ws from this
// host.
func pingP50(u *harness.User, ws string, n int) (time.Duration, error) {
	out := u.Must("ping", ws, "-n", strconv.Itoa(n), "--output", "json")
	var ds []time.Duration
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var pl struct {
			Path      string  `json:"path"`
			LatencyMS float64 `json:"latency_ms"`
		}
		if json.Unmarshal([]byte(l), &pl) == nil && pl.Path != "timeout" && pl.LatencyMS > 0 {
			ds = append(ds, time.Duration(pl.LatencyMS*float64(time.Millisecond)))
		}
	}
	if len(ds) == 0 {
		return 0, fmt.Errorf("tether ping printed no pong:\n%s", out)
	}
	return summarize(ds).P50, nil
}

// loopbackBrowser is an HTTP client with a cookie jar that reaches every
// host on loopback, as a browser on this machine does, following
// redirects.
func loopbackBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1000
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		return dial(ctx, network, "127.0.0.1:"+port)
	}
	return &http.Client{Jar: jar, Transport: tr, Timeout: harness.CommandTimeout}
}

func browserSignIn(ctx context.Context, c *http.Client, primary, login, password string) error {
	body, _ := json.Marshal(map[string]string{"login": login, "password": password})
	req, err := http.NewRequestWithContext(ctx, "POST", primary+"/api/v2/users/login", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", primary)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sign in: %s", resp.Status)
	}
	return nil
}

// browserGet loads a page as a browser would and returns where it ended.
func browserGet(ctx context.Context, c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s at %s", u, resp.Status, resp.Request.URL)
	}
	return resp.Request.URL.String(), nil
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startDelayFront starts a user-space link to backend with a fixed delay
// in each direction.
func startDelayFront(backend string, delay time.Duration) (*delayproxy.Proxy, error) {
	f, err := delayproxy.Listen("127.0.0.1:0", backend)
	if err != nil {
		return nil, err
	}
	f.SetDelay(delay)
	return f, nil
}

// cleanHomeAgent returns how to run the agent so that its shells start
// without the user's startup files, and says what the shells are. As root
// on Linux, the agent runs in a mount namespace of its own where an empty
// directory (under dir) covers the user's home: the shells' HOME is that
// empty directory, so a login shell runs /etc/profile only. Otherwise the
// agent runs as it is, and its shells run the user's profile.
func cleanHomeAgent(x harness.Tether, dir string) (harness.Tether, string, error) {
	const asIs = "bash login shells running the user's own profile"
	u, err := user.Current()
	unshare, lerr := exec.LookPath("unshare")
	if runtime.GOOS != "linux" || os.Geteuid() != 0 || err != nil || lerr != nil {
		return x, asIs, nil
	}
	empty := filepath.Join(dir, "home")
	if err := os.Mkdir(empty, 0o700); err != nil {
		return x, "", err
	}
	x.Command = func(ctx context.Context, name string, args ...string) *exec.Cmd {
		// unshare and sh exec in turn: the agent keeps the process.
		return exec.CommandContext(ctx, unshare, append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c",
			`mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", empty, u.HomeDir, name}, args...)...)
	}
	return x, fmt.Sprintf("%s login shells with an empty home (no ~/.profile or ~/.bashrc; /etc/profile runs)", filepath.Base(loginShellOf(u.Username))), nil
}

// loginShellOf is name's shell in /etc/passwd, or /bin/sh.
func loginShellOf(name string) string {
	b, _ := os.ReadFile("/etc/passwd")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == name && f[6] != "" {
			return f[6]
		}
	}
	return "/bin/sh"
}

// profiler is where the proxy and the agent serve Go's profiler, by name,
// when the part is profiled; nil when not.
type profiler map[string]string

// wsproxyProfileTime is how long each CPU profile runs: within a load
// phase (with 100 keys a terminal, the human one takes about 30 s, the
// stress one about 11).
const wsproxyProfileTime = 8 * time.Second

func newProfiler(dir string) (profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	prof := profiler{"dir": dir}
	for _, name := range []string{"proxy", "agent"} {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		prof[name] = addr
	}
	return prof, nil
}

// phase returns what profiles one load phase: a CPU profile of the proxy
// and one of the agent, both over the same wsproxyProfileTime from when it
// is called, written to the directory as PHASE-NAME.pprof. It does nothing
// when the part is not profiled.
func (prof profiler) phase(phase string) func(context.Context) error {
	return func(ctx context.Context) error {
		if prof == nil {
			return nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, name := range []string{"proxy", "agent"} {
			wg.Go(func() {
				errs <- fetchProfile(ctx, prof[name], filepath.Join(prof["dir"], phase+"-"+name+".pprof"))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
}

func fetchProfile(ctx context.Context, addr, path string) error {
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(wsproxyProfileTime/time.Second))
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile at %s: %s", addr, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("profile at %s: %w", addr, err)
	}
	return os.WriteFile(path, b, 0o644)
}
