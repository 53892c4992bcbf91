package coordinator

import (
	"bytes"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// Snapshot is the coordinator's state at one moment, for debugging. It
// shares nodes with the coordinator: treat them as read-only.
type Snapshot struct {
	AgentsConnected int             `json:"agents_connected"` // here
	Clients         int             `json:"clients"`          // here
	Agents          []AgentSnapshot `json:"agents"`           // by ID
	// Outbox counts the events waiting to be published to the other
	// replicas; it grows while the bus is slow.
	Outbox int `json:"outbox,omitempty"`
}

// AgentSnapshot is one agent that is connected (here or on another
// replica) or has clients waiting.
type AgentSnapshot struct {
	ID          uuid.UUID        `json:"id"`
	Connected   bool             `json:"connected"` // here
	ConnectedAt time.Time        `json:"connected_at,omitzero"`
	Replica     uuid.UUID        `json:"replica,omitzero"` // the other replica it is connected to
	Node        *tether.Node     `json:"node,omitempty"`
	Pending     int              `json:"pending"` // updates queued for it
	Clients     []ClientSnapshot `json:"clients"` // connected here, by ID
	// RemoteClients are the clients bound to it on other replicas, by ID.
	RemoteClients []RemoteClientSnapshot `json:"remote_clients,omitempty"`
}

// ClientSnapshot is one connected client.
type ClientSnapshot struct {
	ID          uuid.UUID    `json:"id"`
	ConnectedAt time.Time    `json:"connected_at"`
	Node        *tether.Node `json:"node,omitempty"`
	Pending     int          `json:"pending"`
}

// RemoteClientSnapshot is one client connected to another replica.
type RemoteClientSnapshot struct {
	ID      uuid.UUID    `json:"id"`
	Replica uuid.UUID    `json:"replica"`
	Node    *tether.Node `json:"node,omitempty"`
}

// Snapshot returns the current peers and edges. It walks every peer: meant
// for debug endpoints, not for hot paths.
func (c *Coordinator) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{Clients: len(c.g.clients), Agents: make([]AgentSnapshot, 0, len(c.g.agents))}
	for id, a := range c.g.agents {
		as := AgentSnapshot{ID: id, Replica: a.replica, Node: a.node, Clients: make([]ClientSnapshot, 0, len(a.clients))}
		if a.conn != nil {
			s.AgentsConnected++
			as.Connected = true
			as.ConnectedAt = a.conn.connectedAt
			as.Pending = a.conn.q.len()
		}
		for cid, cl := range a.clients {
			as.Clients = append(as.Clients, ClientSnapshot{
				ID:          cid,
				ConnectedAt: cl.conn.connectedAt,
				Node:        cl.node,
				Pending:     cl.conn.q.len(),
			})
		}
		slices.SortFunc(as.Clients, func(x, y ClientSnapshot) int { return bytes.Compare(x.ID[:], y.ID[:]) })
		for cid, rc := range a.remoteClients {
			as.RemoteClients = append(as.RemoteClients, RemoteClientSnapshot{ID: cid, Replica: rc.replica, Node: rc.node})
		}
		slices.SortFunc(as.RemoteClients, func(x, y RemoteClientSnapshot) int { return bytes.Compare(x.ID[:], y.ID[:]) })
		s.Agents = append(s.Agents, as)
	}
	slices.SortFunc(s.Agents, func(x, y AgentSnapshot) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	if c.out != nil {
		s.Outbox = c.out.len()
	}
	return s
}
