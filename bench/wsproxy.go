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
//   - cfg.wsproxySessions concurrent terminals on the proxy, typing at
//     once, echo p99, against one terminal's echo p99 on the proxy without
//     the delay (its no-delay baseline).

// wsproxyKeyInterval paces each terminal's keystrokes, as a fast typist's.
const wsproxyKeyInterval = 100 * time.Millisecond

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
	// A web terminal is a login shell, which runs the user's profile; the
	// typing starts once every shell is up, so its cost is not measured.
	// But where the profile runs pyenv (as on the machines this was
	// written on), each shell's `pyenv rehash` takes a lock that the
	// others wait up to a minute for, and one killed while holding it
	// stalls every later shell of the machine's user for a minute: the
	// shells here try it once (see sshLoadAgentEnv).
	dep := harness.StartDeployment(p, srv, harness.DeploymentOptions{Workspace: "bench",
		AgentEnv: []string{sshLoadAgentEnv, "PYENV_REHASH_TIMEOUT=0"}})

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
	x.StartWSProxy(p, srv.URL, token, "--http-address", proxyAddr, "--access-url", proxyURL)
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
	proxyEchoes, err := typeAndTime(ctx, browser, viaProxy, keys, nil)
	if err != nil {
		return fmt.Errorf("terminal via the proxy: %w", err)
	}
	primaryEchoes, err := typeAndTime(ctx, browser, viaPrimary, keys, nil)
	if err != nil {
		return fmt.Errorf("terminal via the primary: %w", err)
	}
	sp, spr := summarize(proxyEchoes), summarize(primaryEchoes)
	links := fmt.Sprintf("browser↔primary +%s each way, browser↔proxy +%s each way", cfg.wsproxyPrimaryDelay, cfg.wsproxyProxyDelay)
	res.lower("wsproxy/echo-goal", millis(goal), "ms", fmt.Sprintf("browser↔proxy RTT %.1f ms + proxy↔agent RTT %.2f ms + 10 ms (browser↔primary RTT %.1f ms); %s",
		millis(proxyRTT), millis(agentRTT), millis(primaryRTT), links))
	res.lower("wsproxy/echo-proxy-p50", millis(sp.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.1f ms; %s", sp.N, millis(sp.P99), links))
	res.lower("wsproxy/echo-primary-p50", millis(spr.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.1f ms; %s", spr.N, millis(spr.P99), links))

	base, err := typeAndTime(ctx, browser, direct, keys, nil)
	if err != nil {
		return fmt.Errorf("terminal on the proxy without delay: %w", err)
	}
	sb := summarize(base)
	res.lower("wsproxy/baseline-echo-p99", millis(sb.P99), "ms", fmt.Sprintf("1 terminal on the proxy, no delay, %d keystrokes, p50 %.2f ms", sb.N, millis(sb.P50)))

	cfg.logf("wsproxy: %d terminals at once", cfg.wsproxySessions)
	var (
		mu      sync.Mutex
		all     []time.Duration
		firstEr error
		wg      sync.WaitGroup
	)
	// Every terminal opens its shell first; then all type at once.
	var opened sync.WaitGroup
	opened.Add(cfg.wsproxySessions)
	allOpen := make(chan struct{})
	go func() { opened.Wait(); close(allOpen) }()
	var start time.Time
	for range cfg.wsproxySessions {
		wg.Go(func() {
			var once sync.Once
			open := func() { once.Do(opened.Done) }
			defer open() // a terminal that fails to open counts as opened
			ds, err := typeAndTime(ctx, browser, direct, keys, func() {
				open()
				<-allOpen
			})
			mu.Lock()
			defer mu.Unlock()
			all = append(all, ds...)
			if err != nil && firstEr == nil {
				firstEr = err
			}
		})
	}
	<-allOpen
	start = time.Now()
	cfg.logf("wsproxy: %d terminals open, typing", cfg.wsproxySessions)
	wg.Wait()
	if firstEr != nil {
		return fmt.Errorf("%d terminals at once: %w", cfg.wsproxySessions, firstEr)
	}
	sc := summarize(all)
	res.lower("wsproxy/concurrent-echo-p99", millis(sc.P99), "ms", fmt.Sprintf("%d terminals on the proxy at once, no delay, %d keystrokes each every %s, %d in all in %.0f s; p50 %.1f ms, max %.0f ms",
		cfg.wsproxySessions, keys, wsproxyKeyInterval, sc.N, time.Since(start).Seconds(), millis(sc.P50), millis(sc.Max)))
	return nil
}

// terminalTarget is a web terminal's WebSocket and the page origin that
// opens it.
// host, if set, is the Host the request names (the proxy's access URL's,
// when the bench reaches the proxy past its delay).
type terminalTarget struct{ ws, origin, host string }

// typeAndTime opens a fresh terminal session at t, waits for its shell,
// calls opened (if not nil: it may wait for the other terminals), and
// types n keystrokes, one every wsproxyKeyInterval from a random start
// within the first, each timed from its send until its echo arrives.
func typeAndTime(ctx context.Context, browser *http.Client, t terminalTarget, n int, opened func()) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(n)*(wsproxyKeyInterval+wsproxyEchoTimeout))
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, t.ws+"?reconnect="+uuid.NewString()+"&height=24&width=80",
		&websocket.DialOptions{HTTPClient: browser, HTTPHeader: http.Header{"Origin": {t.origin}}, Host: t.host})
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
	if err := send("PS1='> '; unset PROMPT_COMMAND; echo READY-$((20+22))\r"); err != nil {
		return nil, err
	}
	if err := await("READY-42"); err != nil {
		return nil, err
	}
	if opened != nil {
		opened()
	}
	// Typed characters echo one by one at the end of the line; a line
	// killed (Ctrl-U) now and then keeps it short.
	const letters = "abcdefghijklmnopqrstuvwxyz"
	ds := make([]time.Duration, 0, n)
	select {
	case <-time.After(rand.N(wsproxyKeyInterval)): // terminals type out of step
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tick := time.NewTicker(wsproxyKeyInterval)
	defer tick.Stop()
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ds, ctx.Err()
		}
		if i > 0 && i%40 == 0 {
			if err := send("\x15echo K$((3+4))K\r"); err != nil {
				return ds, err
			}
			if err := await("K7K"); err != nil {
				return ds, err
			}
		}
		c := string(letters[i%len(letters)])
		t0 := time.Now()
		if err := send(c); err != nil {
			return ds, err
		}
		if err := await(c); err != nil {
			return ds, err
		}
		ds = append(ds, time.Since(t0))
	}
	conn.Close(websocket.StatusNormalClosure, "")
	return ds, nil
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
