package coordclient

import (
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// apply hands one response to the Tunnel.
func (c *Client) apply(resp *tether.CoordinateResponse) {
	if resp.DERPMap != nil {
		c.opts.Tunnel.SetDERPMap(resp.DERPMap)
	}
	if len(resp.Peers) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range resp.Peers {
		log := c.logger.With(slog.String("peer", u.ID.String()))
		p := c.peers[u.ID]
		switch u.Kind {
		case tether.PeerNode:
			if u.Node == nil {
				log.Warn("coordinator sent a peer update without a node")
				continue
			}
			if err := u.Node.Validate(u.ID); err != nil {
				log.Warn("coordinator sent an invalid node", slog.Any("error", err))
				continue
			}
			if err := c.opts.Tunnel.UpsertPeer(u.ID, u.Node); err != nil {
				log.Warn("cannot add peer to the tunnel", slog.Any("error", err))
				continue
			}
			if p == nil {
				p = &peerState{}
				c.peers[u.ID] = p
				log.Debug("peer introduced")
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
			delete(c.peers, u.ID)
			c.opts.Tunnel.RemovePeer(u.ID)
		case tether.PeerLost:
			if p == nil {
				continue
			}
			log.Debug("peer lost", slog.String("reason", u.Reason))
			c.markLostLocked(u.ID, p)
			c.tellLostLocked(u.ID, p)
		default:
			// A newer coordinator may know kinds this client does not.
			log.Debug("ignoring peer update of unknown kind", slog.String("kind", string(u.Kind)))
		}
	}
	c.notifyLocked()
}

// expectReintroductions marks every known peer lost: after a reconnect, the
// coordinator reintroduces those still there, and the others (which may have
// left while this client was away) expire.
//
// The Tunnel hears of them as lost too: a peer that is still there is
// reintroduced at once, while one that left meanwhile (killed while the
// server restarted, say) would otherwise never be reported.
func (c *Client) expectReintroductions() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.peers {
		c.markLostLocked(id, p)
		c.tellLostLocked(id, p)
	}
	c.notifyLocked()
}

// tellLostLocked tells the Tunnel that the peer is lost.
func (c *Client) tellLostLocked(id uuid.UUID, p *peerState) {
	if p.told || c.stopped {
		return
	}
	p.told = true
	c.opts.Tunnel.SetPeerLost(id, true)
}

// untellLostLocked takes back what tellLostLocked said.
func (c *Client) untellLostLocked(id uuid.UUID, p *peerState) {
	if !p.told {
		return
	}
	p.told = false
	c.opts.Tunnel.SetPeerLost(id, false)
}

// untellLost takes back every lost state the Tunnel was told of: the
// client's coordination broke, so it no longer knows.
func (c *Client) untellLost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, p := range c.peers {
		c.untellLostLocked(id, p)
	}
}

// markLostLocked starts p's removal timer, unless it runs already.
func (c *Client) markLostLocked(id uuid.UUID, p *peerState) {
	if p.lost != nil || c.stopped {
		return
	}
	p.lostGen++
	gen := p.lostGen
	p.lost = time.AfterFunc(c.opts.LostPeerTimeout, func() { c.expire(id, gen) })
}

// expire removes a lost peer whose time is up.
func (c *Client) expire(id uuid.UUID, gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[id]
	if p == nil || p.lost == nil || p.lostGen != gen || c.stopped {
		return // reintroduced or removed meanwhile
	}
	c.logger.Debug("lost peer expired", slog.String("peer", id.String()))
	delete(c.peers, id)
	c.opts.Tunnel.RemovePeer(id)
	c.notifyLocked()
}

func (p *peerState) stopLostTimer() {
	if p.lost != nil {
		p.lost.Stop()
		p.lost = nil
	}
}

// notifyLocked wakes AwaitPeer callers.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
