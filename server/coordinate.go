package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/store"
)

// getConnectionInfo tells a peer (a user's CLI or an agent) how to join the
// tunnel network: the DERP map and the deployment's network policy.
// A bearer token may be either kind.
func (s *Server) getConnectionInfo(w http.ResponseWriter, r *http.Request) error {
	if r.Header.Get(tether.AgentTokenHeader) != "" {
		if _, err := s.authenticateAgent(r); err != nil {
			return err
		}
	} else if _, err := s.authenticateUser(r); err != nil {
		if r.Header.Get(tether.SessionTokenHeader) != "" || headerToken(r, tether.AgentTokenHeader) == "" {
			return err
		}
		if _, aerr := s.authenticateAgent(r); aerr != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, s.connectionInfo())
	return nil
}

var errBrowserOnly = tether.Errorf(tether.EBROWSERONLY,
	"this deployment is browser-only: open the workspace's terminal and apps in the dashboard instead of the CLI")

// clientCoordinate introduces a user's CLI to a workspace's agent. The
// client names its own peer ID (query "id"), from which its tunnel address
// derives, so that a reconnecting client keeps its address and its tunnels.
func (s *Server) clientCoordinate(w http.ResponseWriter, r *http.Request, u store.User) error {
	if s.connInfo.BrowserOnly {
		return errBrowserOnly
	}
	version := r.URL.Query().Get("version")
	if !slices.Contains(tether.CoordinateProtocolVersions, version) {
		return tether.Errorf(tether.EINVALID, "coordination protocol version %q is not supported (the server speaks %s): upgrade the CLI", version, tether.CoordinateProtocolVersion)
	}
	clientID, err := uuid.Parse(r.URL.Query().Get("id"))
	if err != nil || clientID == uuid.Nil {
		return tether.Errorf(tether.EINVALID, "query parameter id must be the client's peer ID (a UUID)")
	}
	// Its own choice, but never an agent's ID: the coordinator's queues and
	// the UDP relays know peers by ID, and a client posing as another
	// workspace's agent would displace that agent at the relay.
	switch _, err := s.store.WorkspaceByID(r.Context(), clientID); {
	case err == nil:
		return tether.Errorf(tether.EINVALID, "query parameter id must be the client's own peer ID, not a workspace's")
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	ws, err := s.lookupWorkspace(r, u)
	if err != nil {
		return err
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept has written the HTTP error.
	}
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stream := coordinator.NewWebSocket(conn, clientID, coordinator.WebSocketOptions{Version: version})
	defer s.trackLive(r, u, ws, "tunnel", stream.Revoke)()
	err = s.coord.ServeClient(ctx, clientID, ws.ID, stream)
	stream.Close(err)
	s.logger.Debug("client coordination ended", slog.String("user", u.Username),
		slog.String("workspace", ws.Owner+"/"+ws.Name), slog.Any("err", err))
	return nil
}
