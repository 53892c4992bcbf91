package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// Bus carries coordination events to the other replicas of a deployment.
// Publish must deliver events of one publisher in order; it may block
// (it does network I/O) and is never called with the coordinator's lock held.
type Bus interface {
	Publish(ctx context.Context, ev Event) error
}

// EventKind says what happened on the replica that published an Event.
type EventKind string

// The events. A replica publishes the life of each peer it holds: a hello
// when the peer's stream starts, a node each time the peer sets one, a gone
// when the stream ends (but not when a newer stream of the same peer, here
// or on another replica, replaced it: the peer is still there). Hellos also
// make the other side repeat what it knows, so that a replica that started
// late, or that a peer just moved to, learns the nodes it needs without a
// shared store: an agent_hello makes the agent's clients re-publish their
// nodes, a client_hello makes the client's agent re-publish its node.
const (
	EventAgentHello  EventKind = "agent_hello"  // an agent connected here (its node follows)
	EventAgentNode   EventKind = "agent_node"   // an agent connected here has this node
	EventAgentGone   EventKind = "agent_gone"   // an agent connected here left (Graceful: said so)
	EventClientHello EventKind = "client_hello" // a client bound to AgentID connected here
	EventClientNode  EventKind = "client_node"  // such a client has this node
	EventClientGone  EventKind = "client_gone"  // such a client left (Graceful: said so)
	EventRelayHello  EventKind = "relay_hello"  // a UDP relay (RelayID) connected here
	EventRelayNode   EventKind = "relay_node"   // a UDP relay connected here has this node
	EventRelayGone   EventKind = "relay_gone"   // a UDP relay connected here left (Graceful: said so)
	// EventResync: the publisher may have missed events (its bus
	// connection broke) and forgot what it knew of the others; they
	// re-publish the nodes of the peers they hold. AgentID is unset.
	EventResync EventKind = "resync"
)

// Event is one coordination event between replicas.
type Event struct {
	Kind     EventKind    `json:"kind"`
	Replica  uuid.UUID    `json:"replica"` // the publisher
	AgentID  uuid.UUID    `json:"agent"`   // unset for a relay's events
	ClientID uuid.UUID    `json:"client,omitempty"`
	RelayID  uuid.UUID    `json:"relay,omitzero"` // with the relay kinds
	Node     *tether.Node `json:"node,omitempty"`
	Graceful bool         `json:"graceful,omitempty"`
}

// isClient reports whether the event is about a client.
func (ev *Event) isClient() bool {
	switch ev.Kind {
	case EventClientHello, EventClientNode, EventClientGone:
		return true
	}
	return false
}

// isRelay reports whether the event is about a UDP relay.
func (ev *Event) isRelay() bool {
	switch ev.Kind {
	case EventRelayHello, EventRelayNode, EventRelayGone:
		return true
	}
	return false
}

// isNode reports whether the event carries a node.
func (ev *Event) isNode() bool {
	return ev.Kind == EventAgentNode || ev.Kind == EventClientNode || ev.Kind == EventRelayNode
}

// HandleEvent applies an event published by another replica: the bus
// subscriber calls it for every event it receives. Events this replica
// published itself, and malformed ones, are ignored. It never waits for the
// bus: what it has to publish in return goes through the outbox.
func (c *Coordinator) HandleEvent(ev Event) {
	if ev.Replica == c.replica {
		return
	}
	if err := checkEvent(&ev); err != nil {
		c.logger.Warn("ignoring coordination event", slog.String("kind", string(ev.Kind)),
			slog.String("replica", ev.Replica.String()), slog.String("agent", ev.AgentID.String()),
			slog.String("client", ev.ClientID.String()), slog.Any("error", err))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Kind {
	case EventResync:
		c.g.republishLocked()
	case EventAgentHello:
		c.g.remoteAgentHelloLocked(ev.Replica, ev.AgentID)
		c.g.announceRelaysLocked(ev.Replica)
	case EventAgentNode:
		c.g.remoteAgentNodeLocked(ev.Replica, ev.AgentID, ev.Node)
	case EventAgentGone:
		c.g.remoteAgentGoneLocked(ev.Replica, ev.AgentID, ev.Graceful)
	case EventClientHello:
		c.g.remoteClientHelloLocked(ev.Replica, ev.AgentID, ev.ClientID)
		c.g.announceRelaysLocked(ev.Replica)
	case EventClientNode:
		c.g.remoteClientNodeLocked(ev.Replica, ev.AgentID, ev.ClientID, ev.Node)
	case EventClientGone:
		c.g.remoteClientGoneLocked(ev.Replica, ev.AgentID, ev.ClientID, ev.Graceful)
	case EventRelayHello:
		c.g.remoteRelayHelloLocked(ev.Replica, ev.RelayID)
	case EventRelayNode:
		c.g.remoteRelayNodeLocked(ev.Replica, ev.RelayID, ev.Node)
	case EventRelayGone:
		c.g.remoteRelayGoneLocked(ev.Replica, ev.RelayID, ev.Graceful)
	}
}

// checkEvent returns why ev cannot be applied, if it cannot. Nodes are
// validated again although their replica did so: a bad message on the bus
// must not reach peers.
func checkEvent(ev *Event) error {
	switch ev.Kind {
	case EventAgentHello, EventAgentNode, EventAgentGone,
		EventClientHello, EventClientNode, EventClientGone,
		EventRelayHello, EventRelayNode, EventRelayGone:
	case EventResync:
		if ev.Replica == uuid.Nil {
			return errors.New("no replica")
		}
		return nil
	default:
		return errors.New("unknown kind")
	}
	switch {
	case ev.Replica == uuid.Nil:
		return errors.New("no replica")
	case ev.isRelay() && ev.RelayID == uuid.Nil:
		return errors.New("no relay")
	case !ev.isRelay() && ev.AgentID == uuid.Nil:
		return errors.New("no agent")
	case ev.isClient() && (ev.ClientID == uuid.Nil || ev.ClientID == ev.AgentID):
		return errors.New("no valid client")
	}
	if !ev.isNode() {
		return nil
	}
	id := ev.AgentID
	switch {
	case ev.isClient():
		id = ev.ClientID
	case ev.isRelay():
		id = ev.RelayID
	}
	if err := ev.Node.Validate(id); err != nil {
		return fmt.Errorf("invalid node: %w", err)
	}
	return nil
}

// ReplicaGone tells the coordinator that another replica died (its
// heartbeat stopped): every agent, client and relay it held counts as lost, and
// their local counterparts hear PeerLost. A peer that reconnects to a live
// replica is introduced again by that replica's events.
func (c *Coordinator) ReplicaGone(replica uuid.UUID) {
	if replica == c.replica {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.g.replicaGoneLocked(replica)
}

// Resync is for when this replica may have missed events of the others
// (its bus connection broke and came back): it forgets every peer held by
// another replica, so local counterparts hear PeerLost (their tunnels stay
// up: peers keep lost peers for a while), and asks the other replicas to
// re-publish the nodes of the peers they hold, which introduces the live
// ones again. Without a Bus it does nothing.
func (c *Coordinator) Resync() {
	if c.out == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.g.forgetRemoteLocked()
	c.g.publishLocked(Event{Kind: EventResync})
}

// Close stops publishing to the bus. Events not yet published are dropped:
// the other replicas learn that this replica's peers are gone when its
// heartbeat stops (ReplicaGone). Close is a no-op without a Bus; streams
// still being served keep working locally.
func (c *Coordinator) Close() {
	if c.out == nil {
		return
	}
	c.closeOnce.Do(func() {
		c.stopPublish()
		<-c.publishDone
		c.out.close()
	})
}

// publishLoop hands the outbox's events to the bus, in order, until ctx is
// done. It is the only caller of Publish, so a blocked bus delays the other
// replicas' view of this one but never a peer: producers only append to the
// outbox.
func (c *Coordinator) publishLoop(ctx context.Context) {
	defer close(c.publishDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.out.wake:
		}
		for _, ev := range c.out.take() {
			err := c.bus.Publish(ctx, ev)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.logger.Warn("dropping coordination event", slog.String("kind", string(ev.Kind)),
					slog.String("agent", ev.AgentID.String()), slog.String("client", ev.ClientID.String()),
					slog.Any("error", err))
			}
		}
	}
}

// outbox holds the events waiting for publishLoop, oldest first. Like a
// peer's queue it coalesces, so that a stalled bus costs memory in
// proportion to the peers that changed rather than to their updates: a node
// event replaces the pending node event of the same peer in place, as long
// as no later event about that peer is pending (a hello or gone after it
// must stay after the node that follows it).
type outbox struct {
	replica uuid.UUID // stamped on every event
	// wake has room for one signal, as in queue.
	wake chan struct{}

	mu       sync.Mutex
	events   []Event           // guarded by mu
	lastNode map[eventPeer]int // peer → position of its pending node event, if it is the peer's last pending event; guarded by mu
	closed   bool              // guarded by mu
}

// eventPeer names the peer an event is about. Agents, clients and relays
// are kept apart: a client names its own ID, which may collide with an
// agent's.
type eventPeer struct {
	id   uuid.UUID
	kind byte // 'a', 'c' or 'r'
}

func newOutbox(replica uuid.UUID) *outbox {
	return &outbox{replica: replica, wake: make(chan struct{}, 1), lastNode: make(map[eventPeer]int)}
}

// push appends ev, or replaces the same peer's pending node with it.
func (o *outbox) push(ev Event) {
	ev.Replica = o.replica
	p := eventPeer{id: ev.AgentID, kind: 'a'}
	switch {
	case ev.isClient():
		p = eventPeer{id: ev.ClientID, kind: 'c'}
	case ev.isRelay():
		p = eventPeer{id: ev.RelayID, kind: 'r'}
	}
	isNode := ev.isNode()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if i, ok := o.lastNode[p]; ok && isNode {
		o.events[i] = ev
		return
	}
	o.events = append(o.events, ev)
	if isNode {
		o.lastNode[p] = len(o.events) - 1
	} else {
		delete(o.lastNode, p)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// take removes and returns every pending event.
func (o *outbox) take() []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	evs := o.events
	o.events = nil
	clear(o.lastNode)
	return evs
}

// len returns the number of events not yet taken, for snapshots.
func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.events)
}

// close drops what is pending and makes later pushes no-ops.
func (o *outbox) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.events, o.lastNode = nil, nil
}
