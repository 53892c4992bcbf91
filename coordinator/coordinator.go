// Package coordinator is the server side of the coordination protocol
// (tether.CoordinateRequest, tether.CoordinateResponse): it introduces peers
// to one another and forwards their nodes along authorized edges only.
//
// Peers are of two kinds. An agent (one per workspace, ID = the workspace ID)
// may be reached by any number of clients. A client (a user's CLI or the
// server's own web proxy, ID = a fresh UUID per connection) is bound to
// exactly one agent when it connects; the caller has already checked that the
// client's user may reach that workspace. Nodes flow only along these edges:
//
//   - an agent's node goes to every client currently bound to it;
//   - a client's node goes only to its agent;
//   - a new client gets its agent's latest node at once, and an agent that
//     (re)connects gets the nodes of all its clients;
//   - when a peer leaves, its counterparts hear PeerDisconnected if it said
//     so (CoordinateRequest.Disconnect) or the server took its access away
//     (a stream ended with a *RevokedError), and PeerLost if its stream
//     broke;
//   - a second stream with the same peer ID replaces the first, whose Serve
//     call returns ErrReplaced; its counterparts hear nothing until the new
//     stream sends a node.
//
// # Node keys
//
// The coordinator also answers which tunnel keys belong to the deployment
// (KnowsNodeKey, AwaitNodeKey): the keys of the latest nodes of the peers
// it holds or hears of from other replicas. The built-in DERP relay admits
// only those (package relay).
//
// # Slow consumers
//
// Every connected peer has its own send queue drained by one goroutine. The
// queue coalesces: it keeps only the latest update about each counterpart
// (an update is a peer's whole state, so older ones carry nothing the newest
// does not) plus the latest DERP map. Its size is therefore bounded by the
// peer's number of counterparts, so a slow reader costs memory proportional
// to its edges and never blocks the peers that produce updates. A peer whose
// Send does not finish within Options.SendTimeout is treated as lost.
//
// # Cost
//
// An update costs O(counterparts of the sender): one map lookup and one
// queue insert per recipient under a single lock. Only PushDERPMap,
// Snapshot and ReplicaGone walk every peer. Each connected peer costs the
// caller's goroutine (which runs Serve and reads) plus one sending
// goroutine. With several replicas, each one also remembers the latest node
// of every peer of the deployment, and an update costs each replica one
// event to decode and apply.
//
// # Several replicas
//
// With Options.Bus set, several Coordinators (one per server replica) serve
// one deployment, and an agent may be connected to one replica while its
// clients are connected to others. Each replica publishes the life of the
// peers it holds as Events (hello, node, gone; see EventKind), in order,
// and applies the events of the others (HandleEvent). There is no shared
// store: every replica remembers, from the events, which replica holds each
// agent and client and their latest nodes, and treats a remote peer like a
// local one when deciding who learns what. It then delivers only to the
// peers it holds, so nodes still flow only along client-agent edges. Hellos
// make the counterparts repeat their nodes, which is how a replica that
// started late, or that an agent just moved to, catches up.
//
// A peer's newest stream wins wherever it is: a hello from another replica
// for a peer held here ends the stream here with ErrReplaced, silently, as
// a second stream on one replica does, and later events from a replica
// about a peer it no longer holds are stale and ignored. ("Newest" is the
// order in which hellos arrive: two streams of one peer opened on two
// replicas within the bus's latency may end each other; the peer
// reconnects.) When a replica dies (ReplicaGone), the peers it held count
// as lost. An event that Publish fails to deliver is dropped, and the
// replicas disagree until the peer's next event or hello. A replica that
// knows it missed events (its bus connection broke) calls Resync: it
// forgets the others' peers and asks them to re-publish their nodes.
//
// Publishing never holds the lock or blocks a peer: events go into an
// outbox (which coalesces node events like a queue) drained by one
// goroutine per Coordinator, stopped by Close. The graph (graph.go) still
// makes every decision; remote events are just more of its inputs.
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// Stream is one peer's coordination connection, seen from the coordinator.
// Recv returns the peer's next request and Send delivers one response; both
// must return when ctx is done. The coordinator calls Recv from one
// goroutine and Send from another, never two of the same at once. Nodes that
// Recv returns are kept and forwarded as they are, so the stream must not
// reuse them.
type Stream interface {
	Recv(ctx context.Context) (*tether.CoordinateRequest, error)
	Send(ctx context.Context, resp *tether.CoordinateResponse) error
}

// Errors that end a Serve call and that callers tell apart.
var (
	// ErrReplaced: a newer stream with the same peer ID took over.
	ErrReplaced = errors.New("replaced by a newer connection")
	// ErrInvalidNode: the peer sent a node that fails validation.
	ErrInvalidNode = errors.New("invalid node")
	// ErrClientBound: the client ID is already bound to another agent.
	ErrClientBound = errors.New("client is bound to another agent")
)

// RevokedError ends a stream whose peer lost its access: its user was
// suspended, deleted or signed out, or may no longer reach the workspace.
// A Stream's Recv returns it (WebSocket.Revoke), and the peer's
// counterparts hear PeerDisconnected rather than PeerLost, so that they
// drop the peer's tunnel at once instead of keeping it in case it comes
// back. Reason is for people.
type RevokedError struct{ Reason string }

func (e *RevokedError) Error() string { return "access revoked: " + e.Reason }

// Reasons sent with PeerDisconnected and PeerLost.
const (
	reasonDisconnected = "peer disconnected"
	reasonLost         = "peer's connection to the coordinator was lost"
)

// DefaultSendTimeout is the SendTimeout used when Options leaves it zero.
const DefaultSendTimeout = 30 * time.Second

// maxBatch is the most peer updates handed to one Send. It keeps a response
// well under tether.MaxCoordinateMessage for ordinary nodes (the WebSocket
// adapter splits any that are not) and bounds the latency of a DERP map
// behind a long backlog.
const maxBatch = 16

// Options configures a Coordinator. The zero value is usable.
type Options struct {
	// Logger receives connection events at debug level and misbehaving
	// peers at warn level. Nil discards.
	Logger *slog.Logger
	// SendTimeout is how long one Send to a peer may take before the peer
	// is considered lost and its stream ended. Zero means DefaultSendTimeout.
	SendTimeout time.Duration
	// DERPMap, when set, is sent to every peer as it connects, until
	// PushDERPMap replaces it.
	DERPMap *tailcfg.DERPMap
	// Replica is this replica's ID, which it publishes its events under
	// and which the others pass to ReplicaGone when it dies. Required
	// with a Bus.
	Replica uuid.UUID
	// Bus, when set, makes this Coordinator one of several replicas (see
	// the package comment): it publishes its peers' events there, and
	// expects the other replicas' events through HandleEvent. Nil means
	// a single replica. A Coordinator with a Bus must be closed.
	Bus Bus
}

// Coordinator is the in-memory coordinator of one server. Its methods are
// safe for concurrent use.
type Coordinator struct {
	logger      *slog.Logger
	sendTimeout time.Duration

	// With a Bus only: events for the other replicas wait in out until
	// publishLoop hands them to bus.
	replica     uuid.UUID
	bus         Bus
	out         *outbox
	stopPublish context.CancelFunc
	publishDone chan struct{}
	closeOnce   sync.Once

	stats stats // for Collector (metrics.go)

	mu sync.Mutex
	g  graph // guarded by mu
}

// New returns a Coordinator with no peers. It panics if opts has a Bus but
// no Replica, a configuration error that would make its events unusable.
func New(opts Options) *Coordinator {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	st := opts.SendTimeout
	if st <= 0 {
		st = DefaultSendTimeout
	}
	c := &Coordinator{logger: logger, sendTimeout: st, replica: opts.Replica}
	c.g.init(opts.DERPMap)
	if opts.Bus != nil {
		if opts.Replica == uuid.Nil {
			panic("coordinator: Options.Bus needs Options.Replica")
		}
		c.bus = opts.Bus
		c.out = newOutbox(opts.Replica)
		c.g.out = c.out
		ctx, cancel := context.WithCancel(context.Background())
		c.stopPublish, c.publishDone = cancel, make(chan struct{})
		go c.publishLoop(ctx)
	}
	return c
}

// ServeAgent serves the coordination stream of the agent of workspace
// agentID until the stream ends, ctx is done, or a newer stream for the same
// agent replaces it. It returns nil when the agent said it was leaving, and
// otherwise why the stream ended (ErrReplaced, ErrInvalidNode, the context's
// cause, or the stream's error).
func (c *Coordinator) ServeAgent(ctx context.Context, agentID uuid.UUID, s Stream) error {
	return c.serve(ctx, &peerConn{id: agentID, agentID: agentID, isAgent: true}, s)
}

// ServeClient serves the coordination stream of client clientID, bound to
// the agent agentID, like ServeAgent. The caller must already have checked
// that the client may reach that agent. A client ID that is connected with
// another agent is refused with ErrClientBound.
func (c *Coordinator) ServeClient(ctx context.Context, clientID, agentID uuid.UUID, s Stream) error {
	if clientID == agentID {
		return fmt.Errorf("client ID equals its agent ID %s", agentID)
	}
	return c.serve(ctx, &peerConn{id: clientID, agentID: agentID}, s)
}

// PushDERPMap sends m to every connected peer, and to every peer that
// connects later.
func (c *Coordinator) PushDERPMap(m *tailcfg.DERPMap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.g.pushDERPMapLocked(m)
}

// AgentConnected reports whether the agent with the given ID has a stream,
// here or on another replica.
func (c *Coordinator) AgentConnected(agentID uuid.UUID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.g.agents[agentID]
	return a != nil && a.held()
}

// peerConn is one stream of one peer: its queue and a way to end it.
type peerConn struct {
	id          uuid.UUID
	agentID     uuid.UUID // == id for an agent
	isAgent     bool
	connectedAt time.Time
	q           queue
	cancel      context.CancelCauseFunc
}

func (pc *peerConn) kind() string {
	if pc.isAgent {
		return "agent"
	}
	return "client"
}

func (c *Coordinator) serve(ctx context.Context, pc *peerConn, s Stream) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pc.cancel = cancel
	pc.connectedAt = time.Now()
	pc.q.init(&c.stats.coalesced)
	log := c.logger.With(slog.String("peer", pc.id.String()), slog.String("kind", pc.kind()))

	c.mu.Lock()
	err := c.g.connectLocked(pc)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	log.Debug("peer connected", slog.String("agent", pc.agentID.String()))

	stopSend, sendDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sendDone)
		if err := c.sendLoop(ctx, pc, s, stopSend); err != nil {
			cancel(fmt.Errorf("send: %w", err))
		}
	}()

	graceful, err := c.recvLoop(ctx, pc, s)
	var revoked *RevokedError
	departed := graceful || errors.As(err, &revoked)

	c.mu.Lock()
	c.g.disconnectLocked(pc, departed)
	c.mu.Unlock()
	if graceful {
		// Let a Send in progress finish: cancelling it would break the
		// stream (a WebSocket closes on a cancelled write) before the
		// caller can close it properly.
		close(stopSend)
		<-sendDone
	}
	cancel(err)
	<-sendDone

	switch {
	case graceful:
		log.Debug("peer disconnected")
		return nil
	case errors.Is(err, ErrReplaced):
		log.Debug("peer replaced by a newer connection")
	case errors.Is(err, ErrInvalidNode):
		c.stats.invalidNodes.Add(1)
		log.Warn("peer sent an invalid node", slog.Any("error", err))
	case revoked != nil:
		log.Info("peer's access revoked", slog.String("reason", revoked.Reason))
	default:
		log.Debug("peer lost", slog.Any("error", err))
	}
	return err
}

// recvLoop reads requests until the stream ends. It reports whether the peer
// left on purpose, and otherwise why it ended.
func (c *Coordinator) recvLoop(ctx context.Context, pc *peerConn, s Stream) (graceful bool, err error) {
	for {
		req, err := s.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return false, context.Cause(ctx)
			}
			return false, fmt.Errorf("receive: %w", err)
		}
		if req.Node != nil {
			// The one check of a node from a peer, whatever its
			// stream (WebSocket, in-memory): past this point the
			// coordinator trusts it.
			if err := req.Node.Validate(pc.id); err != nil {
				return false, fmt.Errorf("%w: %v", ErrInvalidNode, err)
			}
			c.mu.Lock()
			c.g.setNodeLocked(pc, req.Node)
			c.mu.Unlock()
		}
		if req.Disconnect {
			return true, nil
		}
	}
}

// sendLoop drains pc's queue into s until ctx is done, stop is closed, or a
// Send fails.
func (c *Coordinator) sendLoop(ctx context.Context, pc *peerConn, s Stream, stop <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case <-pc.q.wake:
		}
		for {
			resp, ok := pc.q.take(maxBatch)
			if !ok {
				break
			}
			sctx, cancel := context.WithTimeout(ctx, c.sendTimeout)
			err := s.Send(sctx, resp)
			timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded)
			cancel()
			switch {
			case err == nil:
				c.stats.updatesSent.Add(uint64(len(resp.Peers)))
			case ctx.Err() != nil:
				return nil
			case timedOut:
				c.stats.sendTimeouts.Add(1)
				return fmt.Errorf("peer did not read within %v: %w", c.sendTimeout, err)
			default:
				return err
			}
		}
	}
}
