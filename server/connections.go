package server

import (
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// connections holds what each connected agent last said about its
// tunnels' paths. It is in memory: agents repeat it every minute.
type connections struct {
	mu   sync.Mutex
	byWS map[uuid.UUID]tether.WorkspaceConnection
}

func (c *connections) set(ws uuid.UUID, conn *tether.WorkspaceConnection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn == nil {
		delete(c.byWS, ws)
		return
	}
	if c.byWS == nil {
		c.byWS = map[uuid.UUID]tether.WorkspaceConnection{}
	}
	c.byWS[ws] = *conn
}

func (c *connections) get(ws uuid.UUID) *tether.WorkspaceConnection {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.byWS[ws]; ok {
		return &v
	}
	return nil
}

func (s *Server) postConnections(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	var req tether.AgentConnectionsReport
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if c := req.Connection; c != nil {
		if c.Path != tether.PathDirect && c.Path != tether.PathRelay && c.Path != tether.PathDERP {
			return tether.Errorf(tether.EINVALID, "connection path %.20q must be direct, relay or derp", c.Path)
		}
		if len(c.DERPRegion) > 64 || len(c.Endpoint) > 64 || c.Peers < 0 {
			return tether.Errorf(tether.EINVALID, "connection report is malformed")
		}
	}
	s.connections.set(ws.ID, req.Connection)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
