package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/ptyproto"
	"github.com/tetherdev/tether/server/agentnet"
	"github.com/tetherdev/tether/store"
)

// The web terminal: a browser's WebSocket, relayed by the server over its
// own tunnel to the agent's reconnecting PTY (package ptyproto).
//
// Browser to server: text messages, each a JSON tether.TerminalInput:
// {"data": "..."} is input as typed or pasted, {"height": H, "width": W} a
// resize. Server to browser: binary messages of raw terminal output.
//
// The browser names its session (query "reconnect"); reconnecting with the
// same name reattaches to the same shell and replays its recent output.

// terminalDialTimeout bounds reaching the agent before the upgrade.
const terminalDialTimeout = 30 * time.Second

// terminalKeepalive pings the browser so that proxies do not close an idle
// terminal.
const terminalKeepalive = 15 * time.Second

// maxTerminalMessage bounds one message from the browser (a large paste).
const maxTerminalMessage = 1 << 20

// agentLeftReason is the close reason the browser shows when the
// workspace's agent left mid-session.
func agentLeftReason(why error) string {
	switch {
	case errors.Is(why, agentnet.ErrAgentRestarted):
		return "the workspace's agent restarted; its terminal sessions ended"
	case errors.Is(why, agentnet.ErrAgentUnreachable):
		return "the workspace's agent stopped answering"
	}
	return "the workspace's agent disconnected"
}

// errAgentOffline is what browsers see when a workspace's agent is away.
func errAgentOffline(ws store.Workspace) error {
	return tether.Errorf(tether.EUNAVAILABLE, "the agent of workspace %s/%s is not connected: start it (`tether agent`) and try again", ws.Owner, ws.Name)
}

// errTerminalUnreached is what browsers see when the terminal could not be
// opened on the agent (err): connected says whether the coordinator holds
// the agent, if this server has a coordinator (a workspace proxy has not).
// An agent that is connected but slow is not called offline.
func errTerminalUnreached(ws store.Workspace, connected, known bool, err error) error {
	var timeout interface{ Timeout() bool }
	switch {
	case known && !connected:
		return errAgentOffline(ws)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout():
		if !known {
			return tether.Errorf(tether.EUNAVAILABLE, "the agent of workspace %s/%s did not answer within %v: it is not connected, or too busy; try again", ws.Owner, ws.Name, terminalDialTimeout)
		}
		return tether.Errorf(tether.EUNAVAILABLE, "the agent of workspace %s/%s is connected but did not answer within %v: it may be too busy; try again", ws.Owner, ws.Name, terminalDialTimeout)
	default:
		return tether.Errorf(tether.EUNAVAILABLE, "the agent of workspace %s/%s did not open the terminal: %v", ws.Owner, ws.Name, err)
	}
}

func parseSize(s string, def uint16) (uint16, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil || v == 0 {
		return 0, tether.Errorf(tether.EINVALID, "terminal size %q must be a number from 1 to 65535", s)
	}
	return uint16(v), nil
}

func (s *Server) workspacePTY(w http.ResponseWriter, r *http.Request, u store.User) error {
	ws, err := s.lookupWorkspace(r, u)
	if err != nil {
		return err
	}
	session, height, width, err := terminalParams(r)
	if err != nil {
		return err
	}
	if !s.coord.AgentConnected(ws.ID) {
		return errAgentOffline(ws)
	}
	return s.bridgeTerminal(w, r, ws, u.ID.String()+"/"+session, height, width, func(end func(reason string)) func() {
		return s.trackLive(r, u, ws, "web terminal", end)
	})
}

// terminalParams reads the terminal's query: its session name and size.
func terminalParams(r *http.Request) (session string, height, width uint16, err error) {
	q := r.URL.Query()
	session = q.Get("reconnect")
	if session == "" || len(session) > 128 {
		return "", 0, 0, tether.Errorf(tether.EINVALID, "query parameter reconnect must name the terminal session (1 to 128 characters)")
	}
	if height, err = parseSize(q.Get("height"), 24); err != nil {
		return "", 0, 0, err
	}
	if width, err = parseSize(q.Get("width"), 80); err != nil {
		return "", 0, 0, err
	}
	return session, height, width, nil
}

// bridgeTerminal reaches the agent's PTY session id over the server's
// tunnel and relays it to the browser's WebSocket until either side ends.
// track registers the live terminal with a function that ends it (the
// user lost access) and returns its unregistering; nil tracks nothing.
//
// With an agent that serves positions, the browser may move the terminal
// to a direct path (terminal_direct.go): the relay then stops, and starts
// again from the browser's last byte when the browser asks.
func (s *Server) bridgeTerminal(w http.ResponseWriter, r *http.Request, ws store.Workspace, id string, height, width uint16,
	track func(end func(reason string)) (untrack func())) error {
	logger := s.logger.With(slog.String("workspace", ws.Owner+"/"+ws.Name))
	// Sessions are per user, so that two people with access to one
	// workspace never share a shell by accident.
	hdr := ptyproto.Header{ID: id, Height: height, Width: width}
	pty, attached, positions, err := s.attachTerminal(r.Context(), ws, hdr)
	if err != nil {
		logger.Warn("web terminal: reach agent", slog.Any("err", err))
		known := s.coord != nil
		return errTerminalUnreached(ws, known && s.coord.AgentConnected(ws.ID), known, err)
	}
	// An agent that dies sends nothing more through the tunnel, not even a
	// reset: the browser is told as soon as the coordinator loses the
	// agent, and reconnects to the same session when it is back (the
	// tunnel itself ends the connection only once the agent has stopped
	// answering, or restarted).
	agentLeft, whyLeft := s.agentNet.WatchAgent(ws.ID)

	// Large output (a listing, a log) is compressed message by message,
	// with a compressor from a pool: one kept per terminal (context
	// takeover) cost the proxy 155 KiB a terminal, 96 against 65 MiB with
	// 200 terminals open (go run ./bench -parts wsproxy, proxy-rss), for
	// little gain on a terminal's mostly tiny messages.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	if err != nil {
		pty.Close()
		return nil // Accept has written the HTTP error.
	}
	s.wg.Add(1)
	defer s.wg.Done()
	if track != nil {
		defer track(func(reason string) {
			conn.Close(websocket.StatusCode(tether.CloseAccessRevoked), reason)
		})()
	}
	conn.SetReadLimit(maxTerminalMessage)
	ctx, stop := context.WithCancel(s.ctx)
	t := &terminalRelay{s: s, ws: ws, conn: conn, ctx: ctx, stop: stop, agentLeft: agentLeft, whyLeft: whyLeft, hdr: hdr}
	sig := &terminalSignal{s: s, wsID: ws.ID, id: id, conn: conn, ctx: ctx, logger: logger}
	s.terminalPaths.add(ws.ID, false, 1)
	defer func() {
		stop()
		conn.CloseNow()
		sig.close()
		t.close()
		s.terminalPaths.add(ws.ID, t.direct, -1)
	}()
	t.start(pty, attached, positions)

	var ice []string
	if positions && s.browserDirect != nil {
		ice = s.browserDirect()
	}
	if ice != nil {
		sendTerminalEvent(ctx, conn, tether.TerminalEvent{Direct: &tether.TerminalDirect{ICEServers: ice}})
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tk := time.NewTicker(terminalKeepalive)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-agentLeft:
				conn.Close(websocket.StatusGoingAway, agentLeftReason(whyLeft()))
				stop()
				return
			case <-tk.C:
				pctx, cancel := context.WithTimeout(ctx, terminalKeepalive)
				err := conn.Ping(pctx)
				cancel()
				if err != nil {
					stop()
					return
				}
			}
		}
	}()
	// Input: browser → terminal.
	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			break
		}
		var in tether.TerminalInput
		if typ != websocket.MessageText || json.Unmarshal(msg, &in) != nil {
			conn.Close(websocket.StatusUnsupportedData, `send JSON text messages: {"data": "..."} or {"height": H, "width": W}`)
			break
		}
		if in.Data != nil {
			s.terminalBytesIn.Add(uint64(len(*in.Data)))
			if !t.write([]byte(*in.Data)) {
				break
			}
		}
		if in.Height > 0 && in.Width > 0 {
			if !t.resize(in.Height, in.Width) {
				break
			}
		}
		if in.Signal != nil {
			if ice == nil {
				sendTerminalEvent(ctx, conn, tether.TerminalEvent{Signal: &tether.TerminalSignal{Type: tether.SignalError, Message: errDirectOff.Error()}})
			} else {
				sig.handle(in.Signal, ice)
			}
		}
		if in.Relay != nil && positions {
			if !t.setRelay(in.Relay) {
				break
			}
		}
	}
	conn.CloseNow()
	return nil
}

// attachTerminal reaches the agent's session with positions, or, with an
// agent that serves none, without.
func (s *Server) attachTerminal(ctx context.Context, ws store.Workspace, h ptyproto.Header) (*ptyproto.Conn, ptyproto.Attached, bool, error) {
	dctx, cancel := context.WithTimeout(ctx, terminalDialTimeout)
	defer cancel()
	c, err := s.agentNet.Dial(dctx, ws.ID, tether.AgentTerminalPort)
	if err != nil {
		return nil, ptyproto.Attached{}, false, err
	}
	pty, a, err := ptyproto.AttachAt(dctx, c, h)
	if err == nil || !errors.Is(err, ptyproto.ErrNoAnswer) || h.Resume != nil {
		return pty, a, true, err
	}
	// An agent older than positions forwards the port to the workspace,
	// where nothing answers.
	c, err = s.agentNet.Dial(dctx, ws.ID, tether.AgentPTYPort)
	if err != nil {
		return nil, ptyproto.Attached{}, false, err
	}
	pty, err = ptyproto.Attach(dctx, c, h)
	return pty, ptyproto.Attached{}, false, err
}

// sendTerminalEvent sends one event to the browser. The WebSocket library
// serializes writes.
func sendTerminalEvent(ctx context.Context, conn *websocket.Conn, e tether.TerminalEvent) {
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	conn.Write(ctx, websocket.MessageText, b)
}

// terminalRelay is the server's relay of one WebSocket's terminal: at most
// one connection to the agent's session at a time, none while the browser
// is direct.
type terminalRelay struct {
	s         *Server
	ws        store.Workspace
	conn      *websocket.Conn
	ctx       context.Context
	stop      context.CancelFunc
	agentLeft <-chan struct{}
	whyLeft   func() error
	wg        sync.WaitGroup

	// Only the input loop reads and writes these.
	hdr    ptyproto.Header // the session and its last size
	direct bool            // the relay is paused: the browser is direct

	mu  sync.Mutex
	pty *ptyproto.Conn // guarded by mu; nil while paused
}

// start relays pty's output to the browser, after telling it where the
// output starts (with positions).
func (t *terminalRelay) start(pty *ptyproto.Conn, a ptyproto.Attached, positions bool) {
	t.mu.Lock()
	t.pty = pty
	t.mu.Unlock()
	if positions {
		sendTerminalEvent(t.ctx, t.conn, tether.TerminalEvent{Attached: &tether.TerminalAttached{
			TerminalPosition: tether.TerminalPosition{Instance: a.Instance, Offset: a.Offset}, Replay: a.Replay}})
	}
	t.wg.Add(1)
	go func() {
		// Output: terminal → browser, until the PTY side ends.
		defer t.wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := pty.Read(buf)
			if n > 0 {
				t.s.terminalBytesOut.Add(uint64(n))
				if werr := t.conn.Write(t.ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					t.stop()
					return
				}
			}
			if err != nil {
				t.mu.Lock()
				paused := t.pty != pty
				t.mu.Unlock()
				if paused {
					return // the browser went direct: the relay stopped on purpose
				}
				select {
				case <-t.agentLeft:
					// The tunnel ended the connection: the agent is gone.
					t.conn.Close(websocket.StatusGoingAway, agentLeftReason(t.whyLeft()))
				default:
					t.conn.Close(websocket.StatusNormalClosure, "the terminal session ended")
				}
				t.stop()
				return
			}
		}
	}()
}

// current is the relay's connection, nil while paused.
func (t *terminalRelay) current() *ptyproto.Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pty
}

// write types p into the terminal; false ends the WebSocket. Input that
// arrives while the relay is paused went out before the browser knew, and
// is dropped: the browser sends input on the direct channel from the
// moment it asks for the pause.
func (t *terminalRelay) write(p []byte) bool {
	pty := t.current()
	if pty == nil {
		return true
	}
	_, err := pty.Write(p)
	return err == nil
}

func (t *terminalRelay) resize(h, w uint16) bool {
	t.hdr.Height, t.hdr.Width = h, w
	pty := t.current()
	if pty == nil {
		return true
	}
	err := pty.Resize(h, w)
	return err == nil || errors.Is(err, context.Canceled)
}

// setRelay pauses or resumes the relay; false ends the WebSocket.
func (t *terminalRelay) setRelay(rl *tether.TerminalRelay) bool {
	if !rl.On {
		t.mu.Lock()
		pty := t.pty
		t.pty = nil
		t.mu.Unlock()
		if pty == nil {
			return true
		}
		pty.Close()
		if !t.direct {
			t.direct = true
			t.s.terminalPaths.add(t.ws.ID, false, -1)
			t.s.terminalPaths.add(t.ws.ID, true, 1)
		}
		sendTerminalEvent(t.ctx, t.conn, tether.TerminalEvent{Relay: "paused"})
		return true
	}
	if t.current() != nil {
		return true
	}
	h := t.hdr
	if rl.Resume != nil {
		h.Resume = &ptyproto.Position{Instance: rl.Resume.Instance, Offset: rl.Resume.Offset}
	}
	pty, a, _, err := t.s.attachTerminal(t.ctx, t.ws, h)
	if err != nil {
		t.s.logger.Warn("web terminal: reach agent again", slog.String("workspace", t.ws.Owner+"/"+t.ws.Name), slog.Any("err", err))
		t.conn.Close(websocket.StatusGoingAway, "the workspace's agent cannot be reached")
		return false
	}
	if t.direct {
		t.direct = false
		t.s.terminalPaths.add(t.ws.ID, true, -1)
		t.s.terminalPaths.add(t.ws.ID, false, 1)
	}
	t.start(pty, a, true)
	sendTerminalEvent(t.ctx, t.conn, tether.TerminalEvent{Relay: "resumed"})
	return true
}

// close ends the relay and waits for its goroutines.
func (t *terminalRelay) close() {
	t.stop()
	t.mu.Lock()
	pty := t.pty
	t.mu.Unlock()
	if pty != nil {
		pty.Close()
	}
	t.wg.Wait()
}
