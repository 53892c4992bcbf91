package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/derpmap"
	"github.com/tetherdev/tether/ptyproto"
)

// The web terminal's direct path (tether.TerminalEvent explains the
// exchange). The server's part: it offers the path when the deployment
// allows it and the agent speaks positions, forwards the browser's
// signalling over the tunnel to the agent (tether.AgentRTCPort), bound to
// the session this WebSocket was authorized for, and stops and restarts
// its relay when the browser asks. The WebSocket stays open throughout:
// it authorizes the direct path, which ends with it (the agent closes the
// peer connection when its signalling connection closes), and access
// revoked ends both.

// signalDialTimeout bounds reaching the agent's signalling port.
const signalDialTimeout = 10 * time.Second

// iceServers lists the STUN servers of m as WebRTC URLs.
func iceServers(m *tailcfg.DERPMap) []string {
	out := []string{} // none is not nil: host candidates alone may do
	seen := map[string]bool{}
	add := func(host string, port uint16) {
		u := "stun:" + net.JoinHostPort(host, strconv.Itoa(int(port)))
		if !seen[u] && len(out) < ptyproto.MaxICEServers {
			seen[u] = true
			out = append(out, u)
		}
	}
	for _, s := range derpmap.STUNServers(m) {
		switch {
		case s.IPv4.IsValid():
			add(s.IPv4.String(), s.Port)
		case s.HostName != "":
			add(s.HostName, s.Port)
		}
		if s.IPv6.IsValid() && s.IPv6 != netip.IPv6Unspecified() {
			add(s.IPv6.String(), s.Port)
		}
	}
	return out
}

// terminalPaths counts the web terminals this server serves, by path, per
// workspace, for the dashboard and the metrics.
type terminalPaths struct {
	mu     sync.Mutex
	counts map[uuid.UUID]*[2]int // [relayed, direct]; guarded by mu
}

func (p *terminalPaths) add(ws uuid.UUID, direct bool, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts == nil {
		p.counts = map[uuid.UUID]*[2]int{}
	}
	c := p.counts[ws]
	if c == nil {
		c = new([2]int)
		p.counts[ws] = c
	}
	i := 0
	if direct {
		i = 1
	}
	c[i] += n
	if c[0] == 0 && c[1] == 0 {
		delete(p.counts, ws)
	}
}

// get returns a workspace's terminals: relayed and direct.
func (p *terminalPaths) get(ws uuid.UUID) (relayed, direct int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.counts[ws]; c != nil {
		return c[0], c[1]
	}
	return 0, 0
}

// totals returns every workspace's terminals: relayed and direct.
func (p *terminalPaths) totals() (relayed, direct int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.counts {
		relayed += c[0]
		direct += c[1]
	}
	return relayed, direct
}

// terminalSignal is the signalling of one WebSocket: at most one
// connection to the agent at a time, a new one per offer.
type terminalSignal struct {
	s      *Server
	wsID   uuid.UUID
	id     string // the session bound to every offer
	conn   *websocket.Conn
	ctx    context.Context
	logger *slog.Logger
	wg     sync.WaitGroup

	mu  sync.Mutex
	cur net.Conn // guarded by mu; nil when none
}

// handle forwards one message from the browser.
func (ts *terminalSignal) handle(m *tether.TerminalSignal, ice []string) {
	switch m.Type {
	case tether.SignalOffer:
		ts.closeCurrent()
		if err := ts.open(m, ice); err != nil {
			ts.logger.Debug("direct terminal: reach the agent", slog.Any("err", err))
			ts.event(tether.TerminalEvent{Signal: &tether.TerminalSignal{Type: tether.SignalError,
				Message: "the workspace's agent offers no direct terminal (an older agent?): staying relayed"}})
		}
	case tether.SignalCandidate:
		ts.mu.Lock()
		c := ts.cur
		ts.mu.Unlock()
		if c != nil {
			c.SetWriteDeadline(time.Now().Add(signalDialTimeout))
			if ptyproto.WriteSignal(c, m) != nil {
				c.Close()
			}
		}
	case tether.SignalClose:
		ts.closeCurrent()
	}
}

// open reaches the agent's signalling port, binds it to the session and
// sends the offer; the agent's answers go to the browser until either
// side closes.
func (ts *terminalSignal) open(offer *tether.TerminalSignal, ice []string) error {
	dctx, cancel := context.WithTimeout(ts.ctx, signalDialTimeout)
	defer cancel()
	c, err := ts.s.agentNet.Dial(dctx, ts.wsID, tether.AgentRTCPort)
	if err != nil {
		return err
	}
	c.SetWriteDeadline(time.Now().Add(signalDialTimeout))
	if err := ptyproto.WriteSignal(c, ptyproto.SignalHello{Session: ts.id, ICEServers: ice}); err != nil {
		c.Close()
		return fmt.Errorf("send hello: %w", err)
	}
	if err := ptyproto.WriteSignal(c, offer); err != nil {
		c.Close()
		return fmt.Errorf("send offer: %w", err)
	}
	ts.mu.Lock()
	ts.cur = c
	ts.mu.Unlock()
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		defer c.Close()
		r := ptyproto.NewSignalReader(c)
		answered := false
		for {
			m, err := r.Read()
			if err != nil {
				break
			}
			switch m.Type {
			case tether.SignalAnswer, tether.SignalCandidate, tether.SignalError:
				answered = answered || m.Type == tether.SignalAnswer
				ts.event(tether.TerminalEvent{Signal: &m})
			}
		}
		ts.mu.Lock()
		current := ts.cur == c
		if current {
			ts.cur = nil
		}
		ts.mu.Unlock()
		if current {
			// The agent ended the path (it failed, or the session let
			// the channel go); an old agent forwards the port to the
			// workspace, where nothing answers.
			msg := tether.TerminalSignal{Type: tether.SignalClose}
			if !answered {
				msg = tether.TerminalSignal{Type: tether.SignalError, Message: "the workspace's agent offers no direct terminal (an older agent?): staying relayed"}
			}
			ts.event(tether.TerminalEvent{Signal: &msg})
		}
	}()
	return nil
}

// event sends an event to the browser.
func (ts *terminalSignal) event(e tether.TerminalEvent) {
	sendTerminalEvent(ts.ctx, ts.conn, e)
}

func (ts *terminalSignal) closeCurrent() {
	ts.mu.Lock()
	c := ts.cur
	ts.cur = nil
	ts.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// close ends the signalling, and with it the direct path, and waits.
func (ts *terminalSignal) close() {
	ts.closeCurrent()
	ts.wg.Wait()
}

// errDirectOff is what a browser that signals anyway is told when the
// server offered no direct path.
var errDirectOff = errors.New("direct web terminals are off on this server (--browser-direct=false, --browser-only or --block-direct-connections)")
