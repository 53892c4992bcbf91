package coordclient

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// PeersOptions configure Peers.
type PeersOptions struct {
	// Tunnel receives peers and DERP maps. Required.
	Tunnel Tunnel
	// Logger receives peer events. Nil discards.
	Logger *slog.Logger
	// LostPeerTimeout is how long a lost peer stays in the Tunnel before it
	// is removed, unless reintroduced. Zero means DefaultLostPeerTimeout.
	LostPeerTimeout time.Duration
}

// Peers applies a coordinator's responses to a Tunnel: it is the one place
// that decides what each PeerUpdate does to the tunnel, by the rules in
// the package comment. Client uses it over a WebSocket; the server's own
// tunnels (package server/agentnet) use it over an in-memory stream, with
// the same rules.
//
// Peers trusts the nodes it is given: they are checked where they enter
// the process (the Client checks what it reads off its WebSocket; the
// coordinator checks what peers send it).
//
// Its methods are safe for concurrent use.
type Peers struct {
	tunnel      Tunnel
	logger      *slog.Logger
	lostTimeout time.Duration

	mu       sync.Mutex
	peers    map[uuid.UUID]*peerState // what the Tunnel holds; guarded by mu
	changed  chan struct{}            // closed when peers change; guarded by mu
	sessions int                      // coordination sessions started; guarded by mu
	closed   bool                     // guarded by mu
}

type peerState struct {
	node    *tether.Node
	relay   bool        // a UDP relay, not a peer
	lost    *time.Timer // non-nil while lost: removes the peer when it fires
	lostGen int         // tells a stale timer from the current one
	told    bool        // the Tunnel was told the peer is lost
}

// NewPeers returns an empty Peers for opts.Tunnel.
func NewPeers(opts PeersOptions) *Peers {
	if opts.LostPeerTimeout <= 0 {
		opts.LostPeerTimeout = DefaultLostPeerTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Peers{
		tunnel:      opts.Tunnel,
		logger:      logger,
		lostTimeout: opts.LostPeerTimeout,
		peers:       make(map[uuid.UUID]*peerState),
		changed:     make(chan struct{}),
	}
}

// Apply hands one response to the Tunnel. Every PeerNode update must carry
// a node that is valid for its peer (tether.Node.Validate).
func (ps *Peers) Apply(resp *tether.CoordinateResponse) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.closed {
		return
	}
	if resp.DERPMap != nil {
		ps.tunnel.SetDERPMap(resp.DERPMap)
	}
	if len(resp.Peers) == 0 {
		return
	}
	for _, u := range resp.Peers {
		log := ps.logger.With(slog.String("peer", u.ID.String()))
		p := ps.peers[u.ID]
		switch u.Kind {
		case tether.PeerNode:
			if p != nil && p.relay != u.Relay {
				// An ID is a relay or a peer for good: a relay must never
				// become a peer, which the tunnel would let in.
				log.Warn("ignoring a peer update that changes the peer's kind")
				continue
			}
			upsert := ps.tunnel.UpsertPeer
			if u.Relay {
				upsert = ps.tunnel.UpsertRelay
			}
			if err := upsert(u.ID, u.Node); err != nil {
				log.Warn("cannot add peer to the tunnel", slog.Any("error", err), slog.Bool("relay", u.Relay))
				continue
			}
			if p == nil {
				p = &peerState{relay: u.Relay}
				ps.peers[u.ID] = p
				log.Debug("peer introduced", slog.Bool("relay", u.Relay))
			}
			p.node = u.Node
			p.stopLostTimer()
			p.told = false // UpsertPeer ended the Tunnel's lost state
		case tether.PeerDisconnected:
			if p == nil {
				continue
			}
			log.Debug("peer disconnected", slog.String("reason", u.Reason))
			p.stopLostTimer()
			delete(ps.peers, u.ID)
			ps.tunnel.RemovePeer(u.ID)
		case tether.PeerLost:
			if p == nil {
				continue
			}
			if p.relay {
				// Only paths use a relay, and they fall back to DERP at
				// once; a relay that comes back is introduced again.
				log.Debug("relay lost", slog.String("reason", u.Reason))
				p.stopLostTimer()
				delete(ps.peers, u.ID)
				ps.tunnel.RemovePeer(u.ID)
				continue
			}
			log.Debug("peer lost", slog.String("reason", u.Reason))
			ps.markLostLocked(u.ID, p)
			ps.tellLostLocked(u.ID, p)
		default:
			// A newer coordinator may know kinds this client does not.
			log.Debug("ignoring peer update of unknown kind", slog.String("kind", string(u.Kind)))
		}
	}
	ps.notifyLocked()
}

// SessionStarted says that a coordination session began. From the second
// one on, every known peer counts as lost until the coordinator mentions
// it again: it reintroduces those still there at once, and the others
// (which may have left while this peer was away, unreported) expire.
//
// The Tunnel hears of them as lost too: a peer that is still there is
// reintroduced at once, while one that left meanwhile (killed while the
// server restarted, say) would otherwise never be reported.
func (ps *Peers) SessionStarted() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.sessions++
	if ps.sessions == 1 {
		return
	}
	for id, p := range ps.peers {
		ps.markLostLocked(id, p)
		ps.tellLostLocked(id, p)
	}
	ps.notifyLocked()
}

// SessionEnded says that the coordination session broke: whatever the
// coordinator said about lost peers may no longer hold, so the Tunnel is
// told that no peer is known to be lost. (The removal timers run on: a
// peer not reintroduced by the next session still expires.)
func (ps *Peers) SessionEnded() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id, p := range ps.peers {
		ps.untellLostLocked(id, p)
	}
}

// Close cancels pending removals and takes back every lost state the
// Tunnel was told of; the peers stay in the Tunnel, whose owner decides
// what happens next. After Close, Peers changes nothing in the Tunnel.
func (ps *Peers) Close() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for id, p := range ps.peers {
		p.stopLostTimer()
		ps.untellLostLocked(id, p)
	}
	ps.closed = true
}

// Await waits until the coordinator has introduced the peer with the given
// ID (and it is not lost), and returns its node.
func (ps *Peers) Await(ctx context.Context, id uuid.UUID) (*tether.Node, error) {
	for {
		ps.mu.Lock()
		p, changed := ps.peers[id], ps.changed
		ps.mu.Unlock()
		if p != nil && p.lost == nil {
			return p.node, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tellLostLocked tells the Tunnel that the peer is lost.
func (ps *Peers) tellLostLocked(id uuid.UUID, p *peerState) {
	if p.told || ps.closed {
		return
	}
	p.told = true
	ps.tunnel.SetPeerLost(id, true)
}

// untellLostLocked takes back what tellLostLocked said.
func (ps *Peers) untellLostLocked(id uuid.UUID, p *peerState) {
	if !p.told {
		return
	}
	p.told = false
	ps.tunnel.SetPeerLost(id, false)
}

// markLostLocked starts p's removal timer, unless it runs already.
func (ps *Peers) markLostLocked(id uuid.UUID, p *peerState) {
	if p.lost != nil || ps.closed {
		return
	}
	p.lostGen++
	gen := p.lostGen
	p.lost = time.AfterFunc(ps.lostTimeout, func() { ps.expire(id, gen) })
}

// expire removes a lost peer whose time is up.
func (ps *Peers) expire(id uuid.UUID, gen int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.peers[id]
	if p == nil || p.lost == nil || p.lostGen != gen || ps.closed {
		return // reintroduced or removed meanwhile
	}
	ps.logger.Debug("lost peer expired", slog.String("peer", id.String()))
	delete(ps.peers, id)
	ps.tunnel.RemovePeer(id)
	ps.notifyLocked()
}

func (p *peerState) stopLostTimer() {
	if p.lost != nil {
		p.lost.Stop()
		p.lost = nil
	}
}

// notifyLocked wakes Await callers.
func (ps *Peers) notifyLocked() {
	close(ps.changed)
	ps.changed = make(chan struct{})
}
