package tunnel

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// A peer that is gone sends nothing, not even a reset: connections with it
// would wait forever for data that never comes (an idle SSH session, a
// port forward waiting for a reply). The library's TCP keepalives are out
// of reach of Dial and Listen and default to two hours. So the Conn ends a
// peer's connections itself as soon as it knows the peer is gone, which it
// learns in three ways:
//
//   - RemovePeer: the peer left (the coordinator said so). ErrPeerLeft.
//   - UpsertPeer with a new key: the peer is a new process (keys are made
//     per process), which knows nothing of the old connections; packets
//     of theirs would only draw resets. ErrPeerRestarted.
//   - SetPeerLost: the coordinator lost the peer (its coordination
//     connection broke). That alone proves nothing, since the tunnel does
//     not pass through the coordinator; so the Conn pings the peer, and
//     only when it has not answered for Options.LostPeerGrace does it end
//     the connections. ErrPeerUnreachable.
//
// A relay or path change (a direct path dying, the server restarting)
// never ends connections on its own: the peer is not lost while the
// coordinator is away, and a lost peer that answers pings stays.

// Why a peer's connections were ended, as given to the peer-gone callback.
var (
	ErrPeerLeft        = errors.New("the peer left")
	ErrPeerRestarted   = errors.New("the peer restarted")
	ErrPeerUnreachable = errors.New("the peer stopped answering")
)

// DefaultLostPeerGrace is the Options.LostPeerGrace used when it is zero:
// a peer's program killed mid-session is noticed in about this long.
const DefaultLostPeerGrace = 10 * time.Second

// lostPingInterval is how often a lost peer is pinged, and how long each
// ping waits for its pong.
const lostPingInterval = time.Second

// lostProbe is the pinging of one lost peer.
type lostProbe struct {
	cancel context.CancelFunc
}

// SetPeerGoneCallback sets the function told when the Conn ends a peer's
// connections because the peer is gone (see ErrPeerLeft,
// ErrPeerRestarted, ErrPeerUnreachable), just before they are closed. It
// is called with the Conn's peer lock held: fn must not block, and must not
// call the Conn's peer methods.
func (c *Conn) SetPeerGoneCallback(fn func(id uuid.UUID, why error)) {
	c.mu.Lock()
	c.goneCB = fn
	c.mu.Unlock()
}

// SetPeerLost tells the Conn that the coordinator has lost the peer (lost
// true), or that what it said no longer holds (lost false: the peer's
// state is unknown, for instance while our own coordination is down).
// While the peer is lost the Conn pings it, and if it does not answer for
// Options.LostPeerGrace, its connections are ended (ErrPeerUnreachable);
// the peer itself stays, since the coordinator may yet reintroduce it.
// UpsertPeer and RemovePeer end the lost state too. Unknown IDs are
// ignored.
func (c *Conn) SetPeerLost(id uuid.UUID, lost bool) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if !lost {
		c.stopProbeLocked(id)
		return
	}
	if c.isClosing() || c.lostGrace < 0 || c.lost[id] != nil {
		return
	}
	if _, ok := c.peers.Load().byID[id]; !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &lostProbe{cancel: cancel}
	if c.lost == nil {
		c.lost = make(map[uuid.UUID]*lostProbe)
	}
	c.lost[id] = p
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.probeLost(ctx, id, p)
	}()
}

// stopProbeLocked ends the pinging of a lost peer. c.peerMu must be held.
func (c *Conn) stopProbeLocked(id uuid.UUID) {
	if p := c.lost[id]; p != nil {
		p.cancel()
		delete(c.lost, id)
	}
}

// probeLost pings a lost peer until it has not answered for the grace
// period (and then ends its connections), or until ctx ends.
func (c *Conn) probeLost(ctx context.Context, id uuid.UUID, p *lostProbe) {
	lastSign := time.Now()
	for {
		started := time.Now()
		pctx, cancel := context.WithTimeout(ctx, lostPingInterval)
		_, err := c.Ping(pctx, tether.TunnelIP(id))
		cancel()
		if ctx.Err() != nil || errors.Is(err, ErrUnknownPeer) || errors.Is(err, errClosed) {
			return
		}
		if err == nil {
			lastSign = time.Now()
		}
		if time.Since(lastSign) >= c.lostGrace {
			c.peerUnreachable(id, p)
			return
		}
		if err := c.sleepCtx(ctx, lostPingInterval-time.Since(started)); err != nil {
			return
		}
	}
}

// peerUnreachable ends the connections of a lost peer that stopped
// answering, unless the peer was reintroduced meanwhile.
func (c *Conn) peerUnreachable(id uuid.UUID, p *lostProbe) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if c.isClosing() || c.lost[id] != p {
		return
	}
	delete(c.lost, id)
	old, ok := c.peers.Load().byID[id]
	if !ok {
		return
	}
	c.logger.Info("peer lost and not answering; closing its connections", "peer", id, "after", c.lostGrace)
	c.peerGoneLocked(old, ErrPeerUnreachable)
}

// peerGoneLocked tells the callback that p is gone and closes its
// connections. c.peerMu must be held.
func (c *Conn) peerGoneLocked(p *peer, why error) {
	c.mu.Lock()
	cb := c.goneCB
	c.mu.Unlock()
	if cb != nil {
		cb(p.id, why)
	}
	c.closeConnsTo(p.addr)
}
