package coordinator

import (
	"fmt"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// graph is who is connected, here or on other replicas, who is bound to
// whom, and each peer's latest node. Every forwarding decision is made here
// and nowhere else. Its methods are called with Coordinator.mu held; they
// deliver only by pushing into the queues of local peers (connected to this
// Coordinator), and tell the other replicas by pushing events into the
// outbox.
//
// A remote peer (connected to another replica, known from its events) is
// handled like a local one, except that nothing is delivered to it: its own
// replica does that. Each peer is held by one replica at a time, the one of
// its newest stream; events about a peer from a replica that no longer
// holds it are stale and ignored.
type graph struct {
	agents  map[uuid.UUID]*agent
	clients map[uuid.UUID]*client // local clients
	// relays are the UDP relays, here and on other replicas (relays.go).
	relays map[uuid.UUID]*relay
	// relaysToldTo are the other replicas that have had the nodes of the
	// relays here since they appeared (relays.go, announceRelaysLocked).
	relaysToldTo map[uuid.UUID]bool
	derpMap      *tailcfg.DERPMap // sent to peers as they connect
	out          *outbox          // events for the other replicas; nil with a single replica
	// keys indexes the node keys of every node above (keys.go). Every
	// change of an agent's, client's or remote client's node goes through
	// setAgentNodeLocked, setClientNodeLocked or setRemoteNodeLocked, or
	// forgetLocked when the node's holder is dropped, so that it stays
	// exact.
	keys keyIndex
}

// agent is an agent that is connected here or elsewhere, or that has
// clients (here or elsewhere) waiting for it.
type agent struct {
	conn    *peerConn    // nil unless connected here
	replica uuid.UUID    // the other replica holding the agent; uuid.Nil if none
	node    *tether.Node // latest node; nil while held nowhere or until the first one
	clients map[uuid.UUID]*client
	// remoteClients are the clients bound to this agent that are
	// connected to other replicas.
	remoteClients map[uuid.UUID]*remoteClient
}

// held reports whether the agent has a stream on some replica.
func (a *agent) held() bool { return a.conn != nil || a.replica != uuid.Nil }

// client is a connected client. It is forgotten when it leaves: client IDs
// are not reused, except by the same client reconnecting.
type client struct {
	conn *peerConn
	node *tether.Node
}

// remoteClient is a client connected to another replica.
type remoteClient struct {
	replica uuid.UUID
	node    *tether.Node // nil until the first one
}

func (g *graph) init(m *tailcfg.DERPMap) {
	g.agents = make(map[uuid.UUID]*agent)
	g.clients = make(map[uuid.UUID]*client)
	g.relays = make(map[uuid.UUID]*relay)
	g.relaysToldTo = make(map[uuid.UUID]bool)
	g.derpMap = m
	g.keys.init()
}

// setAgentNodeLocked replaces a's node with n (nil forgets it).
func (g *graph) setAgentNodeLocked(a *agent, n *tether.Node) {
	g.keys.replaceLocked(a.node, n)
	a.node = n
}

// setClientNodeLocked replaces cl's node with n.
func (g *graph) setClientNodeLocked(cl *client, n *tether.Node) {
	g.keys.replaceLocked(cl.node, n)
	cl.node = n
}

// setRemoteNodeLocked replaces rc's node with n.
func (g *graph) setRemoteNodeLocked(rc *remoteClient, n *tether.Node) {
	g.keys.replaceLocked(rc.node, n)
	rc.node = n
}

// forgetLocked is for a node whose holder is dropped from the graph.
func (g *graph) forgetLocked(n *tether.Node) { g.keys.replaceLocked(n, nil) }

// connectLocked adds pc, replacing any stream of the same peer, here or on
// another replica, and queues for it the DERP map and every node it is
// allowed to see.
func (g *graph) connectLocked(pc *peerConn) error {
	if pc.isRelay {
		g.connectRelayLocked(pc)
		return nil
	}
	if pc.isAgent {
		a := g.agentLocked(pc.id)
		if a.conn != nil {
			// The old stream's disconnect will find it is no longer
			// current and tell no one: the agent is still here. Its
			// node stays until the new stream sends one, since that
			// is what its clients hold meanwhile.
			a.conn.cancel(ErrReplaced)
		}
		// A stream on another replica is older: that replica ends it
		// when it hears the hello below.
		a.conn, a.replica = pc, uuid.Nil
		g.greetLocked(pc)
		for id, cl := range a.clients {
			if cl.node != nil {
				pc.q.push(tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: cl.node})
			}
		}
		for id, rc := range a.remoteClients {
			if rc.node != nil {
				pc.q.push(tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: rc.node})
			}
		}
		g.introduceRelaysLocked(pc)
		g.publishLocked(Event{Kind: EventAgentHello, AgentID: pc.id})
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
		a := g.agentLocked(pc.agentID)
		if rc := a.remoteClients[pc.id]; rc != nil {
			// The client moved here; as above, its agent keeps
			// the node it has, and the other replica ends the
			// older stream on hearing the hello below.
			g.setClientNodeLocked(cl, rc.node)
			g.forgetLocked(rc.node)
			delete(a.remoteClients, pc.id)
		}
		g.clients[pc.id] = cl
		a.clients[pc.id] = cl
	}
	g.greetLocked(pc)
	if a := g.agents[pc.agentID]; a.node != nil {
		pc.q.push(tether.PeerUpdate{ID: pc.agentID, Kind: tether.PeerNode, Node: a.node})
	}
	g.introduceRelaysLocked(pc)
	g.publishLocked(Event{Kind: EventClientHello, AgentID: pc.agentID, ClientID: pc.id})
	return nil
}

// setNodeLocked records pc's new node and queues it for pc's counterparts.
func (g *graph) setNodeLocked(pc *peerConn, n *tether.Node) {
	if pc.isRelay {
		g.setRelayNodeOfLocked(pc, n)
		return
	}
	u := tether.PeerUpdate{ID: pc.id, Kind: tether.PeerNode, Node: n}
	if pc.isAgent {
		a := g.agents[pc.id]
		if a == nil || a.conn != pc {
			return // replaced: its last words are stale
		}
		g.setAgentNodeLocked(a, n)
		for _, cl := range a.clients {
			cl.conn.q.push(u)
		}
		g.tellRelaysLocked(pc.id, pc.id, n)
		g.publishLocked(Event{Kind: EventAgentNode, AgentID: pc.id, Node: n})
		return
	}
	cl := g.clients[pc.id]
	if cl == nil || cl.conn != pc {
		return
	}
	g.setClientNodeLocked(cl, n)
	if a := g.agents[pc.agentID]; a.conn != nil {
		a.conn.q.push(u)
	}
	g.tellRelaysLocked(pc.id, pc.agentID, n)
	g.publishLocked(Event{Kind: EventClientNode, AgentID: pc.agentID, ClientID: pc.id, Node: n})
}

// disconnectLocked removes pc, if it is still current, and tells its
// counterparts how it left.
func (g *graph) disconnectLocked(pc *peerConn, graceful bool) {
	pc.q.close()
	if pc.isRelay {
		g.disconnectRelayLocked(pc, graceful)
		return
	}
	u := leftUpdate(pc.id, graceful)
	if pc.isAgent {
		a := g.agents[pc.id]
		if a == nil || a.conn != pc {
			return
		}
		a.conn = nil
		g.setAgentNodeLocked(a, nil)
		for _, cl := range a.clients {
			cl.conn.q.push(u)
		}
		g.pushToRelaysLocked(u)
		g.publishLocked(Event{Kind: EventAgentGone, AgentID: pc.id, Graceful: graceful})
		g.forgetIdleLocked(pc.id)
		return
	}
	cl := g.clients[pc.id]
	if cl == nil || cl.conn != pc {
		return
	}
	g.forgetLocked(cl.node)
	delete(g.clients, pc.id)
	a := g.agents[pc.agentID]
	delete(a.clients, pc.id)
	if a.conn != nil {
		a.conn.q.push(u)
	}
	g.pushToRelaysLocked(u)
	g.publishLocked(Event{Kind: EventClientGone, AgentID: pc.agentID, ClientID: pc.id, Graceful: graceful})
	g.forgetIdleLocked(pc.agentID)
}

// remoteAgentHelloLocked: agent id has a new stream on replica r. That
// stream is the newest, so a stream here ends, and the agent's clients here
// re-publish their nodes for r to pass on.
func (g *graph) remoteAgentHelloLocked(r, id uuid.UUID) {
	a := g.agentLocked(id)
	if a.conn != nil {
		// As with a replacement here: the clients hear nothing and
		// keep the node they have until the new stream sends one.
		a.conn.cancel(ErrReplaced)
		a.conn = nil
	}
	a.replica = r
	for cid, cl := range a.clients {
		if cl.node != nil {
			g.publishLocked(Event{Kind: EventClientNode, AgentID: id, ClientID: cid, Node: cl.node})
		}
	}
}

// remoteAgentNodeLocked: agent id, on replica r, has node n. A replica that
// started after the agent's hello learns where it is from its nodes.
func (g *graph) remoteAgentNodeLocked(r, id uuid.UUID, n *tether.Node) {
	if a := g.agents[id]; a != nil && (a.conn != nil || a.replica != uuid.Nil && a.replica != r) {
		return // r's stream was replaced by a newer one
	}
	a := g.agentLocked(id)
	a.replica = r
	g.setAgentNodeLocked(a, n)
	u := tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: n}
	for _, cl := range a.clients {
		cl.conn.q.push(u)
	}
	g.tellRelaysLocked(id, id, n)
}

// remoteAgentGoneLocked: agent id left replica r.
func (g *graph) remoteAgentGoneLocked(r, id uuid.UUID, graceful bool) {
	a := g.agents[id]
	if a == nil || a.replica != r {
		return // not held there (any more): a stale goodbye
	}
	g.remoteAgentLeftLocked(id, a, graceful)
}

func (g *graph) remoteAgentLeftLocked(id uuid.UUID, a *agent, graceful bool) {
	a.replica = uuid.Nil
	g.setAgentNodeLocked(a, nil)
	u := leftUpdate(id, graceful)
	for _, cl := range a.clients {
		cl.conn.q.push(u)
	}
	g.pushToRelaysLocked(u)
	g.forgetIdleLocked(id)
}

// remoteClientHelloLocked: client cid, bound to agent id, has a new stream
// on replica r. That stream is the newest, so a stream here ends; and if the
// agent is here, it re-publishes its node for r to pass on.
func (g *graph) remoteClientHelloLocked(r, id, cid uuid.UUID) {
	a := g.agentLocked(id)
	rc := a.remoteClients[cid]
	if rc == nil {
		rc = &remoteClient{}
		a.remoteClients[cid] = rc
	}
	rc.replica = r
	// A stream here bound to another agent is left alone: the binding is
	// refused here (ErrClientBound), and the two cannot be both right.
	if cl := g.clients[cid]; cl != nil && cl.conn.agentID == id {
		// As with a replacement here: the agent hears nothing and
		// keeps the node it has until the new stream sends one.
		cl.conn.cancel(ErrReplaced)
		delete(g.clients, cid)
		delete(a.clients, cid)
		g.setRemoteNodeLocked(rc, cl.node)
		g.forgetLocked(cl.node)
	}
	if a.conn != nil && a.node != nil {
		g.publishLocked(Event{Kind: EventAgentNode, AgentID: id, Node: a.node})
	}
}

// remoteClientNodeLocked: client cid, bound to agent id, on replica r, has
// node n. It is remembered even while the agent is elsewhere, for when the
// agent comes here.
func (g *graph) remoteClientNodeLocked(r, id, cid uuid.UUID, n *tether.Node) {
	if cl := g.clients[cid]; cl != nil && cl.conn.agentID == id {
		return // the stream here is newer
	}
	a := g.agentLocked(id)
	rc := a.remoteClients[cid]
	switch {
	case rc == nil:
		rc = &remoteClient{replica: r}
		a.remoteClients[cid] = rc
	case rc.replica != r:
		return // r's stream was replaced by a newer one
	}
	g.setRemoteNodeLocked(rc, n)
	if a.conn != nil {
		a.conn.q.push(tether.PeerUpdate{ID: cid, Kind: tether.PeerNode, Node: n})
	}
	g.tellRelaysLocked(cid, id, n)
}

// remoteClientGoneLocked: client cid, bound to agent id, left replica r.
func (g *graph) remoteClientGoneLocked(r, id, cid uuid.UUID, graceful bool) {
	a := g.agents[id]
	if a == nil {
		return
	}
	if rc := a.remoteClients[cid]; rc == nil || rc.replica != r {
		return // not held there (any more): a stale goodbye
	}
	g.remoteClientLeftLocked(id, a, cid, graceful)
}

func (g *graph) remoteClientLeftLocked(id uuid.UUID, a *agent, cid uuid.UUID, graceful bool) {
	if rc := a.remoteClients[cid]; rc != nil {
		g.forgetLocked(rc.node)
	}
	delete(a.remoteClients, cid)
	u := leftUpdate(cid, graceful)
	if a.conn != nil {
		a.conn.q.push(u)
	}
	g.pushToRelaysLocked(u)
	g.forgetIdleLocked(id)
}

// replicaGoneLocked: replica r died, and every peer it held is lost. It
// walks every agent; replicas die rarely.
func (g *graph) replicaGoneLocked(r uuid.UUID) {
	for id, a := range g.agents {
		for cid, rc := range a.remoteClients {
			if rc.replica == r {
				g.remoteClientLeftLocked(id, a, cid, false)
			}
		}
		if a.replica == r {
			g.remoteAgentLeftLocked(id, a, false)
		}
	}
	for id, rl := range g.relays {
		if rl.replica == r {
			g.remoteRelayLeftLocked(id, rl, false)
		}
	}
	delete(g.relaysToldTo, r)
}

// forgetRemoteLocked forgets every peer held by another replica, as if
// each replica had died: what this replica knew of them may be stale.
func (g *graph) forgetRemoteLocked() {
	for id, a := range g.agents {
		for cid := range a.remoteClients {
			g.remoteClientLeftLocked(id, a, cid, false)
		}
		if a.replica != uuid.Nil {
			g.remoteAgentLeftLocked(id, a, false)
		}
	}
	for id, rl := range g.relays {
		if rl.replica != uuid.Nil {
			g.remoteRelayLeftLocked(id, rl, false)
		}
	}
}

// republishLocked publishes the nodes of every peer held here, for a
// replica that asked (EventResync). Nodes suffice: a replica learns from a
// node where its peer is.
func (g *graph) republishLocked() {
	for id, a := range g.agents {
		if a.conn != nil && a.node != nil {
			g.publishLocked(Event{Kind: EventAgentNode, AgentID: id, Node: a.node})
		}
		for cid, cl := range a.clients {
			if cl.node != nil {
				g.publishLocked(Event{Kind: EventClientNode, AgentID: id, ClientID: cid, Node: cl.node})
			}
		}
	}
	for id, rl := range g.relays {
		if rl.conn != nil && rl.node != nil {
			g.publishLocked(Event{Kind: EventRelayNode, RelayID: id, Node: rl.node})
		}
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
	for _, rl := range g.relays {
		if rl.conn != nil {
			rl.conn.q.setDERPMap(m)
		}
	}
}

// agentLocked returns the agent entry for id, creating a disconnected one.
func (g *graph) agentLocked(id uuid.UUID) *agent {
	a := g.agents[id]
	if a == nil {
		a = &agent{clients: make(map[uuid.UUID]*client), remoteClients: make(map[uuid.UUID]*remoteClient)}
		g.agents[id] = a
	}
	return a
}

// forgetIdleLocked drops the entry of agent id once it is held nowhere and
// no client waits for it.
func (g *graph) forgetIdleLocked(id uuid.UUID) {
	if a := g.agents[id]; a != nil && !a.held() && len(a.clients) == 0 && len(a.remoteClients) == 0 {
		g.forgetLocked(a.node) // nil: an agent held nowhere has no node
		delete(g.agents, id)
	}
}

// greetLocked queues what every newly connected peer gets first.
func (g *graph) greetLocked(pc *peerConn) {
	if g.derpMap != nil {
		pc.q.setDERPMap(g.derpMap)
	}
}

// publishLocked queues ev for the other replicas, if there are any.
func (g *graph) publishLocked(ev Event) {
	if g.out != nil {
		g.out.push(ev)
	}
}

// leftUpdate is what a peer's counterparts hear when it leaves.
func leftUpdate(id uuid.UUID, graceful bool) tether.PeerUpdate {
	if graceful {
		return tether.PeerUpdate{ID: id, Kind: tether.PeerDisconnected, Reason: reasonDisconnected}
	}
	return tether.PeerUpdate{ID: id, Kind: tether.PeerLost, Reason: reasonLost}
}
