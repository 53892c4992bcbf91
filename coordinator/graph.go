package coordinator

import (
	"fmt"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// graph is who is connected, who is bound to whom, and each peer's latest
// node. Every forwarding decision is made here and nowhere else: this is the
// seam where a multi-replica coordinator would swap in shared state (see the
// package comment). Its methods are called with Coordinator.mu held and
// deliver only by pushing into the queues of connected peers.
type graph struct {
	agents  map[uuid.UUID]*agent
	clients map[uuid.UUID]*client
	derpMap *tailcfg.DERPMap // sent to peers as they connect
}

// agent is an agent that is connected, or that has clients waiting for it.
type agent struct {
	conn    *peerConn    // nil while disconnected
	node    *tether.Node // latest node; nil while disconnected or until the first one
	clients map[uuid.UUID]*client
}

// client is a connected client. It is forgotten when it leaves: client IDs
// are not reused.
type client struct {
	conn *peerConn
	node *tether.Node
}

func (g *graph) init(m *tailcfg.DERPMap) {
	g.agents = make(map[uuid.UUID]*agent)
	g.clients = make(map[uuid.UUID]*client)
	g.derpMap = m
}

// connectLocked adds pc, replacing any stream of the same peer, and queues
// for it the DERP map and every node it is allowed to see.
func (g *graph) connectLocked(pc *peerConn) error {
	if pc.isAgent {
		a := g.agentLocked(pc.id)
		if a.conn != nil {
			// The old stream's disconnect will find it is no longer
			// current and tell no one: the agent is still here. Its
			// node stays until the new stream sends one, since that
			// is what its clients hold meanwhile.
			a.conn.cancel(ErrReplaced)
		}
		a.conn = pc
		g.greetLocked(pc)
		for id, cl := range a.clients {
			if cl.node != nil {
				pc.q.push(tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: cl.node})
			}
		}
		return nil
	}

	cl := g.clients[pc.id]
	if cl != nil {
		if cl.conn.agentID != pc.agentID {
			return fmt.Errorf("%w: client %s is connected to agent %s", ErrClientBound, pc.id, cl.conn.agentID)
		}
		cl.conn.cancel(ErrReplaced)
		cl.conn = pc
		// Keep cl.node: the agent has it, and the new stream will
		// replace it with its own soon enough.
	} else {
		cl = &client{conn: pc}
		g.clients[pc.id] = cl
		g.agentLocked(pc.agentID).clients[pc.id] = cl
	}
	g.greetLocked(pc)
	if a := g.agents[pc.agentID]; a.conn != nil && a.node != nil {
		pc.q.push(tether.PeerUpdate{ID: pc.agentID, Kind: tether.PeerNode, Node: a.node})
	}
	return nil
}

// setNodeLocked records pc's new node and queues it for pc's counterparts.
func (g *graph) setNodeLocked(pc *peerConn, n *tether.Node) {
	u := tether.PeerUpdate{ID: pc.id, Kind: tether.PeerNode, Node: n}
	if pc.isAgent {
		a := g.agents[pc.id]
		if a == nil || a.conn != pc {
			return // replaced: its last words are stale
		}
		a.node = n
		for _, cl := range a.clients {
			cl.conn.q.push(u)
		}
		return
	}
	cl := g.clients[pc.id]
	if cl == nil || cl.conn != pc {
		return
	}
	cl.node = n
	if a := g.agents[pc.agentID]; a.conn != nil {
		a.conn.q.push(u)
	}
}

// disconnectLocked removes pc, if it is still current, and tells its
// counterparts how it left.
func (g *graph) disconnectLocked(pc *peerConn, graceful bool) {
	pc.q.close()
	u := tether.PeerUpdate{ID: pc.id, Kind: tether.PeerLost, Reason: reasonLost}
	if graceful {
		u.Kind, u.Reason = tether.PeerDisconnected, reasonDisconnected
	}
	if pc.isAgent {
		a := g.agents[pc.id]
		if a == nil || a.conn != pc {
			return
		}
		a.conn, a.node = nil, nil
		for _, cl := range a.clients {
			cl.conn.q.push(u)
		}
		if len(a.clients) == 0 {
			delete(g.agents, pc.id)
		}
		return
	}
	cl := g.clients[pc.id]
	if cl == nil || cl.conn != pc {
		return
	}
	delete(g.clients, pc.id)
	a := g.agents[pc.agentID]
	delete(a.clients, pc.id)
	if a.conn != nil {
		a.conn.q.push(u)
	} else if len(a.clients) == 0 {
		delete(g.agents, pc.agentID)
	}
}

// pushDERPMapLocked queues m for every connected peer. It is the one
// operation that walks all peers; DERP maps change rarely.
func (g *graph) pushDERPMapLocked(m *tailcfg.DERPMap) {
	g.derpMap = m
	for _, a := range g.agents {
		if a.conn != nil {
			a.conn.q.setDERPMap(m)
		}
	}
	for _, cl := range g.clients {
		cl.conn.q.setDERPMap(m)
	}
}

// agentLocked returns the agent entry for id, creating a disconnected one.
func (g *graph) agentLocked(id uuid.UUID) *agent {
	a := g.agents[id]
	if a == nil {
		a = &agent{clients: make(map[uuid.UUID]*client)}
		g.agents[id] = a
	}
	return a
}

// greetLocked queues what every newly connected peer gets first.
func (g *graph) greetLocked(pc *peerConn) {
	if g.derpMap != nil {
		pc.q.setDERPMap(g.derpMap)
	}
}
