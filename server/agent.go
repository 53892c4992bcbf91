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
}

func (s *Server) getAgentManifest(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	m := tether.AgentManifest{
		WorkspaceID:   ws.ID,
		WorkspaceName: ws.Name,
		Owner:         ws.Owner,
		Apps:          []tether.App{},
		Connection:    s.connInfo,
	}
	if ws.TemplateID != uuid.Nil {
		t, err := s.store.TemplateByID(r.Context(), ws.TemplateID)
		if err != nil {
			return err
		}
		m.Apps = t.Apps
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

// agentConnect holds an agent's WebSocket for as long as the agent runs.
// While it is open the workspace shows as connected.
func (s *Server) agentConnect(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept has written the HTTP error.
	}
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancelCause(s.ctx)
	defer cancel(nil)
	ac := &agentConn{cancel: cancel}
	log := s.logger.With(slog.String("workspace", ws.Owner+"/"+ws.Name))

	s.mu.Lock()
	old := s.agents[ws.ID]
	s.agents[ws.ID] = ac
	s.mu.Unlock()
	if old != nil {
		old.cancel(errReplaced)
	}
	version := r.URL.Query().Get("version")
	if err := s.store.AgentConnected(ctx, ws.ID, s.now(), version); err != nil {
		log.Warn("record agent connection", slog.Any("err", err))
	}
	log.Info("agent connected", slog.String("version", version), slog.String("remote", r.RemoteAddr))

	s.wg.Add(1)
	go s.agentHeartbeats(ctx, ws.ID, log)
	err = s.serveAgent(ctx, conn, ws)

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

const errReplaced = closeReason("replaced by a newer connection of the same agent")

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

// serveAgent runs the agent's side of coordination on its WebSocket.
func (s *Server) serveAgent(ctx context.Context, conn *websocket.Conn, ws store.Workspace) error {
	stream := coordinator.NewWebSocket(conn, ws.ID, coordinator.WebSocketOptions{})
	err := s.coord.ServeAgent(ctx, ws.ID, stream)
	stream.Close(err)
	return err
}
