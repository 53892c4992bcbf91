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
func (s *Server) bridgeTerminal(w http.ResponseWriter, r *http.Request, ws store.Workspace, id string, height, width uint16,
	track func(end func(reason string)) (untrack func())) error {
	dctx, cancel := context.WithTimeout(r.Context(), terminalDialTimeout)
	agentConn, err := s.agentNet.Dial(dctx, ws.ID, tether.AgentPTYPort)
	cancel()
	if err != nil {
		s.logger.Warn("web terminal: reach agent", slog.String("workspace", ws.Owner+"/"+ws.Name), slog.Any("err", err))
		return errAgentOffline(ws)
	}
	// Sessions are per user, so that two people with access to one
	// workspace never share a shell by accident.
	pty, err := ptyproto.Attach(r.Context(), agentConn, ptyproto.Header{ID: id, Height: height, Width: width})
	if err != nil {
		return err
	}
	defer pty.Close()
	// An agent that dies sends nothing more through the tunnel, not even a
	// reset: the browser is told as soon as the coordinator loses the
	// agent, and reconnects to the same session when it is back (the
	// tunnel itself ends the connection only once the agent has stopped
	// answering, or restarted).
	agentLeft, whyLeft := s.agentNet.WatchAgent(ws.ID)

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionContextTakeover})
	if err != nil {
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
	var wg sync.WaitGroup
	defer func() {
		stop()
		conn.CloseNow()
		pty.Close()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		// Output: terminal → browser, until the PTY side ends.
		defer wg.Done()
		defer stop()
		buf := make([]byte, 32<<10)
		for {
			n, err := pty.Read(buf)
			if n > 0 {
				if werr := conn.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				select {
				case <-agentLeft:
					// The tunnel ended the connection: the agent is gone.
					conn.Close(websocket.StatusGoingAway, agentLeftReason(whyLeft()))
				default:
					conn.Close(websocket.StatusNormalClosure, "the terminal session ended")
				}
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(terminalKeepalive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-agentLeft:
				conn.Close(websocket.StatusGoingAway, agentLeftReason(whyLeft()))
				stop()
				return
			case <-t.C:
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
			if _, err := pty.Write([]byte(*in.Data)); err != nil {
				break
			}
		}
		if in.Height > 0 && in.Width > 0 {
			if err := pty.Resize(in.Height, in.Width); err != nil && !errors.Is(err, context.Canceled) {
				break
			}
		}
	}
	conn.CloseNow()
	return nil
}
