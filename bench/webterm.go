package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/ptyproto"
)

// The web terminal part (issue 15): keystroke to echo through the web
// terminal, relayed by the server (its WebSocket) and direct (a WebRTC
// data channel to the agent), in the same run, keystrokes alternating
// between two terminals of the same workspace. The browser is this
// process: it speaks the terminal's WebSocket as the page does, and for
// the direct terminal it is the WebRTC peer the page would be (pion, with
// the ICE servers the server offers and no multicast DNS, so that the
// agent can use its candidates as it does a browser's). The browser
// reaches the server through a user-space delay (internal/delayproxy),
// the server's link, off for a first round and cfg.webtermDelay each way
// for a second; the direct path does not cross it. The agent and the
// server share loopback; the data channel runs between this host's own
// addresses.
//
// Figures: echo p50 and p99 of each path in each round, with the ratio
// direct/relayed, and the goal: with the delay, direct p50 at most the
// relayed p50 less the server detour (the delay's added round trip).

// webtermEchoTimeout bounds one keystroke's wait for its echo, and the
// direct path's coming up.
const webtermEchoTimeout = 30 * time.Second

func runWebTerm(ctx context.Context, cfg *config, res *results, dir string) error {
	p := newPart(ctx, "webterm", dir, cfg.logf)
	defer p.close()
	return p.run(func() error { return webtermBench(ctx, cfg, res, p) })
}

func webtermBench(ctx context.Context, cfg *config, res *results, p *part) error {
	x := harness.Tether{Bin: cfg.tether}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	// The terminals open without the delay; the figures say when it is on.
	front, err := startDelayFront(addr, 0)
	if err != nil {
		return err
	}
	defer front.Close()
	srv := x.StartServerWith(p, harness.ServerOptions{Addr: addr, Args: []string{"--access-url", "http://" + front.Addr()}})
	// The shells run the profile once, and no prompt hook (see wsproxy.go).
	harness.StartDeployment(p, srv, harness.DeploymentOptions{Workspace: "bench",
		AgentEnv: []string{sshLoadAgentEnv, "PYENV_REHASH_TIMEOUT=0"}})

	browser := loopbackBrowser()
	if err := browserSignIn(ctx, browser, srv.URL, harness.AdminName, harness.AdminPassword); err != nil {
		return err
	}
	target := terminalTarget{ws: strings.Replace(srv.URL, "http://", "ws://", 1) + "/api/v2/workspaces/" + harness.AdminName + "/bench/pty", origin: srv.URL}

	relayed, err := openWebTerm(ctx, browser, target, false)
	if err != nil {
		return fmt.Errorf("relayed terminal: %w", err)
	}
	defer relayed.close()
	t0 := time.Now()
	direct, err := openWebTerm(ctx, browser, target, true)
	if err != nil {
		return fmt.Errorf("direct terminal: %w", err)
	}
	defer direct.close()
	cfg.logf("webterm: the direct terminal's data channel carried the session %.0f ms after its WebSocket was asked for", millis(direct.upgraded.Sub(t0)))

	// First on loopback alone (the delay still off): what the server's
	// hop itself costs; then with the server's link delayed.
	rs, ds, err := echoInTurn(ctx, cfg.webtermKeys, relayed, direct)
	if err != nil {
		return err
	}
	sr, sd := summarize(rs), summarize(ds)
	res.lower("webterm/loopback/echo-relayed-p50", millis(sr.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.2f ms; no delay", sr.N, millis(sr.P99)))
	res.lower("webterm/loopback/echo-relayed-p99", millis(sr.P99), "ms", fmt.Sprintf("%d keystrokes; no delay", sr.N))
	res.lower("webterm/loopback/echo-direct-p50", millis(sd.P50), "ms", fmt.Sprintf("%d keystrokes, p99 %.2f ms, alternating with the relayed terminal's", sd.N, millis(sd.P99)))
	res.lower("webterm/loopback/echo-direct-p99", millis(sd.P99), "ms", fmt.Sprintf("%d keystrokes", sd.N))

	front.SetDelay(cfg.webtermDelay)
	rtt, err := latencyP50(ctx, browser, srv.URL, 20)
	if err != nil {
		return err
	}
	rs, ds, err = echoInTurn(ctx, cfg.webtermKeys, relayed, direct)
	if err != nil {
		return err
	}
	if n := direct.relayedAfterPause(); n > 0 {
		return fmt.Errorf("the server relayed %d bytes of the direct terminal after pausing its relay", n)
	}
	sr, sd = summarize(rs), summarize(ds)
	link := fmt.Sprintf("browser↔server +%s each way (server link RTT %.1f ms, the latency endpoint's p50)", cfg.webtermDelay, millis(rtt))
	res.lower("webterm/echo-relayed-p50", millis(sr.P50), "ms", fmt.Sprintf("%d keystrokes, max %.1f ms; %s", sr.N, millis(sr.Max), link))
	res.lower("webterm/echo-relayed-p99", millis(sr.P99), "ms", fmt.Sprintf("%d keystrokes; %s", sr.N, link))
	res.lower("webterm/echo-direct-p50", millis(sd.P50), "ms", fmt.Sprintf("%d keystrokes, max %.1f ms, alternating with the relayed terminal's; %s", sd.N, millis(sd.Max), link))
	res.lower("webterm/echo-direct-p99", millis(sd.P99), "ms", fmt.Sprintf("%d keystrokes; %s", sd.N, link))
	goal := sr.P50 - 2*cfg.webtermDelay
	res.lower("webterm/echo-goal", millis(goal), "ms", fmt.Sprintf("relayed p50 %.1f ms − the server detour's added round trip %s", millis(sr.P50), 2*cfg.webtermDelay))
	res.lower("webterm/upgrade", millis(direct.upgraded.Sub(t0)), "ms", "WebSocket asked for → the data channel carries the session, on loopback without the delay")
	return nil
}

// echoInTurn types keys keystrokes into each terminal in turn, a key
// every wsproxyKeyInterval, so that both see the same machine, and returns
// each one's echo times.
func echoInTurn(ctx context.Context, keys int, relayed, direct *webTerm) (rs, ds []time.Duration, err error) {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	tick := time.NewTicker(wsproxyKeyInterval)
	defer tick.Stop()
	for i := range keys {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		if i > 0 && i%40 == 0 {
			// A line killed now and then keeps it short.
			for _, t := range []*webTerm{relayed, direct} {
				if err := t.typeAndWait("\x15echo K$((3+4))K\r", "K7K"); err != nil {
					return nil, nil, err
				}
			}
		}
		c := string(letters[i%len(letters)])
		for _, t := range []*webTerm{relayed, direct} {
			start := time.Now()
			if err := t.typeAndWait(c, c); err != nil {
				return nil, nil, err
			}
			if t == relayed {
				rs = append(rs, time.Since(start))
			} else {
				ds = append(ds, time.Since(start))
			}
		}
	}
	return rs, ds, nil
}

// webTerm is one web terminal as this process's "browser" holds it: its
// WebSocket and, for a direct one, its data channel, which then carries
// the typing and the output.
type webTerm struct {
	ctx    context.Context
	cancel context.CancelFunc
	conn   *websocket.Conn
	events chan tether.TerminalEvent
	relay  chan []byte // relayed output
	pc     *webrtc.PeerConnection
	dc     *webrtc.DataChannel
	direct chan []byte // the data channel's output, after its answer line
	// upgraded is when the data channel carried the session.
	upgraded time.Time
	wg       sync.WaitGroup

	mu          sync.Mutex
	paused      bool // guarded by mu: the server said it relays no more
	afterPaused int  // guarded by mu: relayed bytes after that
}

// openWebTerm opens a fresh terminal session at t and waits for its shell;
// direct, it also brings up the data channel and moves the terminal onto
// it, as the page does.
func openWebTerm(ctx context.Context, browser *http.Client, t terminalTarget, direct bool) (*webTerm, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &webTerm{ctx: ctx, cancel: cancel, events: make(chan tether.TerminalEvent, 64), relay: make(chan []byte, 1024), direct: make(chan []byte, 1024)}
	dctx, dcancel := context.WithTimeout(ctx, webtermEchoTimeout)
	defer dcancel()
	conn, resp, err := websocket.Dial(dctx, t.ws+"?reconnect="+uuid.NewString()+"&height=24&width=80",
		&websocket.DialOptions{HTTPClient: browser, HTTPHeader: http.Header{"Origin": {t.origin}}})
	if err != nil {
		cancel()
		if resp != nil {
			return nil, fmt.Errorf("open the terminal: %s: %w", resp.Status, err)
		}
		return nil, fmt.Errorf("open the terminal: %w", err)
	}
	w.conn = conn
	conn.SetReadLimit(1 << 20)
	w.wg.Go(w.readWebSocket)
	if direct {
		if err := w.goDirect(); err != nil {
			w.close()
			return nil, err
		}
	} else {
		// A relayed terminal takes no offer, as on a server with
		// --browser-direct=false; its events are read and dropped.
		w.wg.Go(func() {
			for range w.events {
			}
		})
	}
	// The shell is up once it runs a command; its prompt then has no
	// lowercase letter, so that no prompt passes for a keystroke's echo.
	if err := w.typeAndWait("PS1='> '; unset PROMPT_COMMAND; echo READY-$((20+22))\r", "READY-42"); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// readWebSocket sorts the WebSocket's messages: events, and output (which
// a direct terminal no longer reads, and counts once the relay is paused).
func (w *webTerm) readWebSocket() {
	defer close(w.events)
	for {
		typ, msg, err := w.conn.Read(w.ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageText {
			var e tether.TerminalEvent
			if json.Unmarshal(msg, &e) == nil {
				w.mu.Lock()
				w.paused = w.paused || e.Relay == "paused"
				w.mu.Unlock()
				select {
				case w.events <- e:
				case <-w.ctx.Done():
					return
				}
			}
			continue
		}
		w.mu.Lock()
		if w.paused {
			w.afterPaused += len(msg)
		}
		isDirect := w.dc != nil
		w.mu.Unlock()
		if isDirect {
			continue
		}
		select {
		case w.relay <- msg:
		case <-w.ctx.Done():
			return
		}
	}
}

func (w *webTerm) relayedAfterPause() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.afterPaused
}

func (w *webTerm) send(in tether.TerminalInput) error {
	b, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(w.ctx, webtermEchoTimeout)
	defer cancel()
	return w.conn.Write(ctx, websocket.MessageText, b)
}

// goDirect does what the page does for the direct path: waits for the
// server's offer of it, makes a WebRTC offer with a "pty" data channel,
// trades candidates through the WebSocket, sends the channel's header
// line, and once the agent's answer line comes, asks the server to stop
// relaying.
func (w *webTerm) goDirect() error {
	ctx, cancel := context.WithTimeout(w.ctx, webtermEchoTimeout)
	defer cancel()
	var offer *tether.TerminalDirect
	for offer == nil {
		select {
		case e, ok := <-w.events:
			if !ok {
				return errors.New("the terminal closed before the server offered a direct path")
			}
			offer = e.Direct
		case <-ctx.Done():
			return fmt.Errorf("the server offered no direct path: %w", ctx.Err())
		}
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	cfg := webrtc.Configuration{}
	if len(offer.ICEServers) > 0 {
		cfg.ICEServers = []webrtc.ICEServer{{URLs: offer.ICEServers}}
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(cfg)
	if err != nil {
		return fmt.Errorf("peer connection: %w", err)
	}
	w.pc = pc
	ordered := true
	dc, err := pc.CreateDataChannel("pty", &webrtc.DataChannelInit{Ordered: &ordered})
	if err != nil {
		return fmt.Errorf("data channel: %w", err)
	}
	signal := func(m tether.TerminalSignal) {
		if err := w.send(tether.TerminalInput{Signal: &m}); err != nil {
			w.cancel()
		}
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		signal(tether.TerminalSignal{Type: tether.SignalCandidate, Candidate: &tether.ICECandidate{
			Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment,
		}})
	})
	attached := make(chan ptyproto.Attached, 1)
	failed := make(chan error, 1)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	dc.OnOpen(func() {
		hdr, _ := json.Marshal(ptyproto.Header{ID: "", Height: 24, Width: 80})
		if err := dc.Send(append(hdr, '\n')); err != nil {
			fail(fmt.Errorf("send the header line: %w", err))
		}
	})
	var answer []byte
	answered := false
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		b := m.Data
		if !answered {
			nl := bytes.IndexByte(b, '\n')
			if nl < 0 {
				answer = append(answer, b...)
				return
			}
			answer = append(answer, b[:nl]...)
			var a ptyproto.Attached
			if err := json.Unmarshal(answer, &a); err != nil || a.Instance == "" {
				fail(fmt.Errorf("the agent's answer line %q: %v", answer, err))
				return
			}
			answered = true
			attached <- a
			b = b[nl+1:]
		}
		if len(b) > 0 {
			select {
			case w.direct <- bytes.Clone(b):
			case <-w.ctx.Done():
			}
		}
	})
	dc.OnClose(func() { fail(errors.New("the data channel closed")) })
	sdp, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(sdp)
	}
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	signal(tether.TerminalSignal{Type: tether.SignalOffer, SDP: sdp.SDP})
	for {
		select {
		case e, ok := <-w.events:
			if !ok {
				return errors.New("the terminal closed while the direct path came up")
			}
			if e.Signal == nil {
				continue
			}
			switch m := e.Signal; m.Type {
			case tether.SignalAnswer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					return fmt.Errorf("the agent's answer: %w", err)
				}
			case tether.SignalCandidate:
				if m.Candidate != nil && m.Candidate.Candidate != "" {
					pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
						SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment})
				}
			case tether.SignalError, tether.SignalClose:
				return fmt.Errorf("the direct path was refused: %s %s", m.Type, m.Message)
			}
		case <-attached:
			w.mu.Lock()
			w.dc = dc
			w.mu.Unlock()
			w.upgraded = time.Now()
			// From now on the page types into the channel; the server
			// stops relaying. Its events still come (keep them read).
			w.wg.Go(func() {
				for range w.events {
				}
			})
			return w.send(tether.TerminalInput{Relay: &tether.TerminalRelay{On: false}})
		case err := <-failed:
			return err
		case <-ctx.Done():
			return fmt.Errorf("no direct path: %w", ctx.Err())
		}
	}
}

// typeAndWait types text and waits until want comes back, on the path the
// terminal uses.
func (w *webTerm) typeAndWait(text, want string) error {
	w.mu.Lock()
	dc := w.dc
	w.mu.Unlock()
	out := w.relay
	if dc != nil {
		out = w.direct
		var frame bytes.Buffer
		if err := ptyproto.WriteFrame(&frame, ptyproto.FrameData, []byte(text)); err != nil {
			return err
		}
		if err := dc.Send(frame.Bytes()); err != nil {
			return fmt.Errorf("type into the data channel: %w", err)
		}
	} else if err := w.send(tether.TerminalInput{Data: &text}); err != nil {
		return fmt.Errorf("type: %w", err)
	}
	ctx, cancel := context.WithTimeout(w.ctx, webtermEchoTimeout)
	defer cancel()
	var seen strings.Builder
	for !strings.Contains(seen.String(), want) {
		select {
		case b := <-out:
			seen.Write(b)
		case <-ctx.Done():
			return fmt.Errorf("no %q from the terminal: %w", want, ctx.Err())
		}
	}
	return nil
}

func (w *webTerm) close() {
	if w.pc != nil {
		w.pc.Close()
	}
	w.conn.Close(websocket.StatusNormalClosure, "")
	w.cancel()
	w.conn.CloseNow()
	w.wg.Wait()
}
