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
	AgentsConnected int             `json:"agents_connected"`
	Clients         int             `json:"clients"`
	Agents          []AgentSnapshot `json:"agents"` // by ID
}

// AgentSnapshot is one agent that is connected or has clients waiting.
type AgentSnapshot struct {
	ID          uuid.UUID        `json:"id"`
	Connected   bool             `json:"connected"`
	ConnectedAt time.Time        `json:"connected_at,omitzero"`
	Node        *tether.Node     `json:"node,omitempty"`
	Pending     int              `json:"pending"` // updates queued for it
	Clients     []ClientSnapshot `json:"clients"` // by ID
}

// ClientSnapshot is one connected client.
type ClientSnapshot struct {
	ID          uuid.UUID    `json:"id"`
	ConnectedAt time.Time    `json:"connected_at"`
	Node        *tether.Node `json:"node,omitempty"`
	Pending     int          `json:"pending"`
}

// Snapshot returns the current peers and edges. It walks every peer: meant
// for debug endpoints, not for hot paths.
func (c *Coordinator) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{Clients: len(c.g.clients), Agents: make([]AgentSnapshot, 0, len(c.g.agents))}
	for id, a := range c.g.agents {
		as := AgentSnapshot{ID: id, Node: a.node, Clients: make([]ClientSnapshot, 0, len(a.clients))}
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
		s.Agents = append(s.Agents, as)
	}
	slices.SortFunc(s.Agents, func(x, y AgentSnapshot) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	return s
}
