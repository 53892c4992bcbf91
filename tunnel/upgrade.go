package tunnel

import (
	"net/netip"
	"time"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/key"
)

// Pacing of the pings that look for a direct path after a dial reached its
// peer only through the relay.
//
// Why: behind two NATs the first direct pings each side sends are dropped
// by the other side's NAT, which opens only once its own host has sent
// towards us, after our call-me-maybe arrives through the relay. magicsock
// pings a candidate path again only after 5 s (its minimum ping interval),
// so two in three port forwards across the NAT lab ran relayed for 5 s
// before going direct. A ping of ours (the kind `tether ping` sends) is not
// held to that interval: it probes every candidate path at once.
const (
	upgradeFirstPing   = 50 * time.Millisecond
	upgradeMaxInterval = time.Second
	upgradeFor         = 10 * time.Second
)

// pursueDirect pings the peer at ip (key k) every so often, from
// upgradeFirstPing and doubling, until a pong comes over a direct path,
// the peer is removed or upgradeFor has passed; after that, magicsock's
// own heartbeat keeps trying. One pursuit per peer runs at a time. It does
// nothing in relay-only mode.
func (c *Conn) pursueDirect(ip netip.Addr, k key.NodePublic) {
	c.mu.Lock()
	if c.isClosed || c.blockEndpoints || c.pursuing[k] {
		c.mu.Unlock()
		return
	}
	if c.pursuing == nil {
		c.pursuing = make(map[key.NodePublic]bool)
	}
	c.pursuing[k] = true
	c.wg.Add(1)
	c.mu.Unlock()

	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			delete(c.pursuing, k)
			c.mu.Unlock()
		}()
		start := time.Now()
		// Once the direct path is trusted, a ping goes only there, so the
		// pong that ends this is the one after magicsock switched.
		pongs := make(chan *ipnstate.PingResult, 1)
		for interval := upgradeFirstPing; time.Since(start) < upgradeFor; interval = min(interval*2, upgradeMaxInterval) {
			t := time.NewTimer(interval)
		wait:
			for {
				select {
				case res := <-pongs:
					if res.Err == "" && res.Endpoint != "" {
						t.Stop()
						c.logger.Debug("direct path found", "peer", ip, "endpoint", res.Endpoint, "after", time.Since(start))
						return
					}
				case <-t.C:
					break wait
				case <-c.closed:
					t.Stop()
					return
				}
			}
			if p, ok := c.lookupPeer(ip); !ok || p.key() != k {
				return
			}
			c.sendPing(ip, pongs)
		}
		c.logger.Debug("no direct path yet; the library keeps trying", "peer", ip, "after", upgradeFor)
	}()
}
