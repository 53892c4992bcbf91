package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/store"
)

// agentHeartbeat is how often the server records that a connected agent is
// still there.
const agentHeartbeat = 10 * time.Second

// agentConn is one connected agent's WebSocket: cancel ends it, saying why.
type agentConn struct {
	cancel context.CancelCauseFunc
	conn   *websocket.Conn
	remote string    // the agent's address, as the request came
	since  time.Time // when it connected
}

// agentProbeTimeout is how long a connected agent has to answer a ping when
// another connection with its token arrives. A live agent answers within a
// round trip (its WebSocket library answers pings as it reads); one that
// does not is on a dead connection the server has not noticed yet (the
// heartbeat would take up to two intervals), typically because its machine
// restarted, and the new connection takes its place.
const agentProbeTimeout = 3 * time.Second

func (s *Server) getAgentManifest(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	m := tether.AgentManifest{
		WorkspaceID:   ws.ID,
		WorkspaceName: ws.Name,
		Owner:         ws.Owner,
		Apps:          []tether.App{},
		Connection:    s.connectionInfo(),
	}
	if ws.TemplateID != uuid.Nil {
		t, err := s.store.TemplateByID(r.Context(), ws.TemplateID)
		if err != nil {
			return err
		}
		m.Apps = t.Apps
		m.StartupScript, m.StartupScriptTimeout = t.StartupScript, t.StartupScriptTimeout
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// agentConnect holds an agent's WebSocket for as long as the agent runs.
// While it is open the workspace shows as connected.
//
// A workspace has one agent at a time. While one is connected, and answers,
// another with the same token is refused (ECONFLICT, which the agent
// reports and retries slowly): replacing the connected one instead would
// let two copies of an agent (a cloned machine) take the place from each
// other forever, and would let anyone holding a leaked token take over a
// live workspace's connections.
func (s *Server) agentConnect(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	log := s.logger.With(slog.String("workspace", ws.Owner+"/"+ws.Name))
	dead, err := s.checkAgentPlace(r.Context(), ws, r.RemoteAddr, log)
	if err != nil {
		return err
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept has written the HTTP error.
	}
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	ac := &agentConn{cancel: cancel, conn: conn, remote: r.RemoteAddr, since: s.now()}

	s.mu.Lock()
	old := s.agents[ws.ID]
	s.agents[ws.ID] = ac
	s.mu.Unlock()
	switch {
	case old == nil:
	case old == dead:
		old.cancel(errUnresponsive)
	default:
		// One that raced in since checkAgentPlace: the later
		// connection wins, and the earlier agent is refused when it
		// comes back.
		old.cancel(errReplaced)
	}
	version := r.URL.Query().Get("version")
	if err := s.store.AgentConnected(ctx, ws.ID, s.now(), version); err != nil {
		log.Warn("record agent connection", slog.Any("err", err))
	}
	log.Info("agent connected", slog.String("version", version), slog.String("remote", r.RemoteAddr))

	s.wg.Add(1)
	go s.agentHeartbeats(ctx, ws.ID, log)
	err = s.serveAgent(ctx, conn, ws, r.URL.Query().Get("coordinate_version"))

	s.mu.Lock()
	current := s.agents[ws.ID] == ac
	if current {
		delete(s.agents, ws.ID)
	}
	s.mu.Unlock()
	if current {
		s.connections.set(ws.ID, nil)
		// Record with a fresh context: the request's may be gone already.
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.store.AgentDisconnected(rctx, ws.ID, s.now()); err != nil {
			log.Debug("record agent disconnection", slog.Any("err", err))
		}
		rcancel()
	}
	reason := "server shutting down"
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
		reason = cause.Error()
	}
	conn.Close(websocket.StatusGoingAway, reason) // a no-op if the stream closed it already
	log.Info("agent disconnected", slog.Any("err", err))
	return nil
}

type closeReason string

func (c closeReason) Error() string { return string(c) }

const (
	errReplaced     = closeReason("replaced by a newer connection of the same agent")
	errUnresponsive = closeReason("did not answer a ping while another connection of the same agent arrived; replaced by it")
)

// checkAgentPlace decides whether an agent arriving from remote may take
// the workspace's place: yes if no agent holds it, or if the one holding it
// here does not answer a ping within agentProbeTimeout (returned as dead,
// for the caller to end once the newcomer is in); no, with ECONFLICT, if it
// answers or is connected through another replica (which cannot be asked;
// a dead connection there ends within its heartbeat, and the refused
// agent's next try succeeds).
func (s *Server) checkAgentPlace(ctx context.Context, ws store.Workspace, remote string, log *slog.Logger) (dead *agentConn, err error) {
	s.mu.Lock()
	old := s.agents[ws.ID]
	s.mu.Unlock()
	if old == nil {
		if s.coord.AgentConnected(ws.ID) {
			log.Warn("refused a second agent for the workspace: an agent with the same token is connected through another replica",
				slog.String("remote", remote))
			return nil, tether.Errorf(tether.ECONFLICT, "another agent is already connected for workspace %s/%s (through another replica of the server)%s",
				ws.Owner, ws.Name, oneAgentHint)
		}
		return nil, nil
	}
	pctx, cancel := context.WithTimeout(ctx, agentProbeTimeout)
	err = old.conn.Ping(pctx)
	cancel()
	if err == nil {
		log.Warn("refused a second agent for the workspace: the agent connected with the same token still answers",
			slog.String("remote", remote), slog.String("connected_remote", old.remote), slog.Time("connected_since", old.since))
		return nil, tether.Errorf(tether.ECONFLICT, "another agent is already connected for workspace %s/%s (from %s since %s)%s",
			ws.Owner, ws.Name, old.remote, old.since.Format(time.RFC3339), oneAgentHint)
	}
	if ctx.Err() != nil {
		// The newcomer left; the probe proves nothing.
		return nil, tether.Errorf(tether.EUNAVAILABLE, "the agent left while the server checked the one connected")
	}
	log.Info("replacing the workspace's agent connection: it did not answer a ping, and a new connection with its token arrived",
		slog.String("remote", remote), slog.String("old_remote", old.remote), slog.Any("err", err))
	return old, nil
}

// oneAgentHint ends the message a refused agent shows.
const oneAgentHint = ": a workspace's token serves one agent at a time. Stop the other agent; " +
	"if this machine is a copy of the workspace's (a cloned VM or image), create a workspace for it and use that one's token"

// disconnectAgent closes the WebSocket of the workspace's agent, if any.
func (s *Server) disconnectAgent(id uuid.UUID, why string) {
	s.mu.Lock()
	ac := s.agents[id]
	s.mu.Unlock()
	if ac != nil {
		ac.cancel(closeReason(why))
	}
}

func (s *Server) agentHeartbeats(ctx context.Context, id uuid.UUID, log *slog.Logger) {
	defer s.wg.Done()
	t := time.NewTicker(agentHeartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.store.AgentSeen(ctx, id, s.now()); err != nil && ctx.Err() == nil {
				log.Warn("record agent heartbeat", slog.Any("err", err))
			}
		}
	}
}

// serveAgent runs the agent's side of coordination on its WebSocket, in
// the coordination protocol version the agent speaks (empty: 1.0).
func (s *Server) serveAgent(ctx context.Context, conn *websocket.Conn, ws store.Workspace, version string) error {
	stream := coordinator.NewWebSocket(conn, ws.ID, coordinator.WebSocketOptions{Version: version})
	err := s.coord.ServeAgent(ctx, ws.ID, stream)
	stream.Close(err)
	return err
}
