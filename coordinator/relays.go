package coordinator

import (
	"context"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// UDP relays.
//
// A UDP relay (package relay) is a peer of a third kind: the server's own,
// one per replica, served with ServeRelay. It is introduced to every agent
// and client of the deployment, and they to it, whichever replica holds
// them:
//
//   - a relay's node goes to every agent and client (tether.PeerUpdate.Relay
//     set), which make it a candidate relay for their paths and nothing
//     more;
//   - every agent's and client's node goes to every relay, with the agent
//     it belongs to (tether.PeerUpdate.Agent), so that the relay forwards
//     only between a client and its agent;
//   - when either leaves, the other hears it as from any counterpart.
//
// A relay is one more edge for every peer, so it costs one queue entry per
// peer, and its own queue holds an entry per peer of the deployment. Its
// node changes rarely (it publishes no endpoints), and each change walks
// every local peer. Peers that speak protocol 1.0 are kept out of it by
// their stream (WebSocketOptions.Version).

// relay is a UDP relay connected here or to another replica.
type relay struct {
	conn    *peerConn    // nil unless connected here
	replica uuid.UUID    // the other replica holding it; uuid.Nil if here
	node    *tether.Node // latest node; nil until the first one
}

// ServeRelay serves the coordination stream of the UDP relay relayID until
// the stream ends or ctx is done, like ServeAgent. Relay IDs are fresh per
// relay process and must not be an agent's or a client's.
func (c *Coordinator) ServeRelay(ctx context.Context, relayID uuid.UUID, s Stream) error {
	return c.serve(ctx, &peerConn{id: relayID, isRelay: true}, s)
}

// setRelayNodeLocked replaces rl's node with n (nil forgets it).
func (g *graph) setRelayNodeLocked(rl *relay, n *tether.Node) {
	g.keys.replaceLocked(rl.node, n)
	rl.node = n
}

// relayUpdate is what agents and clients hear of a relay's node.
func relayUpdate(id uuid.UUID, n *tether.Node) tether.PeerUpdate {
	return tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: n, Relay: true}
}

// connectRelayLocked adds the relay of pc, and queues for it the node of
// every agent and client of the deployment.
func (g *graph) connectRelayLocked(pc *peerConn) {
	rl := g.relays[pc.id]
	if rl == nil {
		rl = &relay{}
		g.relays[pc.id] = rl
	}
	if rl.conn != nil {
		// As with an agent: its counterparts keep the node they have
		// until the new stream sends one.
		rl.conn.cancel(ErrReplaced)
	}
	rl.conn, rl.replica = pc, uuid.Nil
	g.greetLocked(pc)
	for id, a := range g.agents {
		if a.node != nil {
			pc.q.push(tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: a.node, Agent: id})
		}
		for cid, cl := range a.clients {
			if cl.node != nil {
				pc.q.push(tether.PeerUpdate{ID: cid, Kind: tether.PeerNode, Node: cl.node, Agent: id})
			}
		}
		for cid, rc := range a.remoteClients {
			if rc.node != nil {
				pc.q.push(tether.PeerUpdate{ID: cid, Kind: tether.PeerNode, Node: rc.node, Agent: id})
			}
		}
	}
	g.publishLocked(Event{Kind: EventRelayHello, RelayID: pc.id})
}

// setRelayNodeOfLocked records the new node of the relay of pc and tells
// every agent and client here.
func (g *graph) setRelayNodeOfLocked(pc *peerConn, n *tether.Node) {
	rl := g.relays[pc.id]
	if rl == nil || rl.conn != pc {
		return // replaced
	}
	g.setRelayNodeLocked(rl, n)
	g.pushToPeersLocked(relayUpdate(pc.id, n))
	g.publishLocked(Event{Kind: EventRelayNode, RelayID: pc.id, Node: n})
}

// disconnectRelayLocked removes the relay of pc, if it is still current,
// and tells every agent and client here.
func (g *graph) disconnectRelayLocked(pc *peerConn, graceful bool) {
	rl := g.relays[pc.id]
	if rl == nil || rl.conn != pc {
		return
	}
	g.setRelayNodeLocked(rl, nil)
	delete(g.relays, pc.id)
	g.pushToPeersLocked(leftUpdate(pc.id, graceful))
	g.publishLocked(Event{Kind: EventRelayGone, RelayID: pc.id, Graceful: graceful})
}

// introduceRelaysLocked queues every relay's node for pc, an agent or
// client that just connected.
func (g *graph) introduceRelaysLocked(pc *peerConn) {
	for id, rl := range g.relays {
		if rl.node != nil {
			pc.q.push(relayUpdate(id, rl.node))
		}
	}
}

// tellRelaysLocked queues for every relay here the node n of peer id,
// which belongs to the given agent (itself, for an agent).
func (g *graph) tellRelaysLocked(id, agentID uuid.UUID, n *tether.Node) {
	g.pushToRelaysLocked(tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: n, Agent: agentID})
}

// pushToRelaysLocked queues u for every relay connected here.
func (g *graph) pushToRelaysLocked(u tether.PeerUpdate) {
	for _, rl := range g.relays {
		if rl.conn != nil {
			rl.conn.q.push(u)
		}
	}
}

// pushToPeersLocked queues u for every agent and client connected here. It
// walks them all: only relays, which change rarely, cause it.
func (g *graph) pushToPeersLocked(u tether.PeerUpdate) {
	for _, a := range g.agents {
		if a.conn != nil {
			a.conn.q.push(u)
		}
	}
	for _, cl := range g.clients {
		cl.conn.q.push(u)
	}
}

// announceRelaysLocked publishes the nodes of the relays here once for
// replica r, which has a peer that may need them: r may have started after
// they were published (the relays here are older than r), and nothing else
// would make it hear them until their nodes change. Once per replica: a
// relay's later nodes reach every replica anyway. EventResync publishes them
// again.
func (g *graph) announceRelaysLocked(r uuid.UUID) {
	if g.relaysToldTo[r] {
		return
	}
	g.relaysToldTo[r] = true
	for id, rl := range g.relays {
		if rl.conn != nil && rl.node != nil {
			g.publishLocked(Event{Kind: EventRelayNode, RelayID: id, Node: rl.node})
		}
	}
}

// remoteRelayHelloLocked: relay id has a stream on replica r.
func (g *graph) remoteRelayHelloLocked(r, id uuid.UUID) {
	rl := g.relays[id]
	if rl == nil {
		rl = &relay{}
		g.relays[id] = rl
	}
	if rl.conn != nil {
		rl.conn.cancel(ErrReplaced)
		rl.conn = nil
	}
	rl.replica = r
}

// remoteRelayNodeLocked: relay id, on replica r, has node n.
func (g *graph) remoteRelayNodeLocked(r, id uuid.UUID, n *tether.Node) {
	if rl := g.relays[id]; rl != nil && (rl.conn != nil || rl.replica != uuid.Nil && rl.replica != r) {
		return // r's stream was replaced by a newer one
	}
	rl := g.relays[id]
	if rl == nil {
		rl = &relay{}
		g.relays[id] = rl
	}
	rl.replica = r
	g.setRelayNodeLocked(rl, n)
	g.pushToPeersLocked(relayUpdate(id, n))
}

// remoteRelayGoneLocked: relay id left replica r.
func (g *graph) remoteRelayGoneLocked(r, id uuid.UUID, graceful bool) {
	rl := g.relays[id]
	if rl == nil || rl.replica != r {
		return // a stale goodbye
	}
	g.remoteRelayLeftLocked(id, rl, graceful)
}

func (g *graph) remoteRelayLeftLocked(id uuid.UUID, rl *relay, graceful bool) {
	g.setRelayNodeLocked(rl, nil)
	delete(g.relays, id)
	g.pushToPeersLocked(leftUpdate(id, graceful))
}
