package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// PingResult is the answer to one path-discovery ping.
type PingResult struct {
	// Direct is true when the pong came over a direct UDP path, from
	// Endpoint ("IP:port"); UDPRelay when it came through the UDP relay at
	// Endpoint; otherwise it came through the DERP relay of DERPRegionID
	// (DERPRegionCode).
	Direct         bool
	UDPRelay       bool
	Endpoint       string
	DERPRegionID   int
	DERPRegionCode string
	Latency        time.Duration
}

// Ping sends one path-discovery (disco) ping to the peer at ip and returns
// the first pong, which says which path answered. Right after a start the
// relay usually answers first even where a direct path exists; ping again
// to see the path change. It returns ErrUnknownPeer for an address that is
// not a peer's, and ctx's error if no pong comes in time (a ping never
// answered is simply lost).
func (c *Conn) Ping(ctx context.Context, ip netip.Addr) (PingResult, error) {
	if _, ok := c.lookupPeer(ip); !ok {
		return PingResult{}, fmt.Errorf("ping %s: %w", ip, ErrUnknownPeer)
	}
	// Disco pings only probe paths; a packet through WireGuard makes
	// magicsock also ask the peer to punch towards us (call-me-maybe), without
	// which a path that needs both sides to punch, as between two NATs, shows
	// up only at magicsock's next heartbeat, seconds later.
	c.engine.Ping(ip, tailcfg.PingICMP, 0, func(*ipnstate.PingResult) {})
	ch := make(chan *ipnstate.PingResult, 1)
	c.sendPing(ip, ch)
	select {
	case res := <-ch:
		if res.Err != "" {
			return PingResult{}, fmt.Errorf("ping %s: %s", ip, res.Err)
		}
		return pingResult(res), nil
	case <-ctx.Done():
		return PingResult{}, fmt.Errorf("ping %s: %w", ip, ctx.Err())
	case <-c.closed:
		return PingResult{}, fmt.Errorf("ping %s: %w", ip, errClosed)
	}
}

// sendPing starts a disco ping whose result, if any, goes to ch without
// blocking (magicsock calls back at most once per ping, possibly never).
func (c *Conn) sendPing(ip netip.Addr, ch chan<- *ipnstate.PingResult) {
	c.engine.Ping(ip, tailcfg.PingDisco, 0, func(res *ipnstate.PingResult) {
		select {
		case ch <- res:
		default:
		}
	})
}

func pingResult(res *ipnstate.PingResult) PingResult {
	if res.PeerRelay != "" {
		return PingResult{
			UDPRelay: true,
			Endpoint: relayAddr(res.PeerRelay),
			Latency:  time.Duration(res.LatencySeconds * float64(time.Second)),
		}
	}
	return PingResult{
		Direct:         res.Endpoint != "",
		Endpoint:       res.Endpoint,
		DERPRegionID:   res.DERPRegionID,
		DERPRegionCode: res.DERPRegionCode,
		Latency:        time.Duration(res.LatencySeconds * float64(time.Second)),
	}
}

// Ping pacing while waiting for a peer: every quickPingInterval during
// quickPingPhase, because the usual wait is for the peer to learn our node
// from the coordinator (it drops our pings until then), which takes
// milliseconds to tens of them: the first ping, sent as soon as the peer is
// upserted, was lost in most runs of `tether ssh`, and the pong came within
// 2 ms of the next. Then from firstPingInterval, doubling, so that a peer
// that is gone costs little.
const (
	quickPingInterval = 10 * time.Millisecond
	quickPingPhase    = 300 * time.Millisecond
	firstPingInterval = 50 * time.Millisecond
	maxPingInterval   = time.Second
)

// sessionFresh is how long after a WireGuard handshake we trust the
// session without pinging: less than WireGuard's rekey time (2 minutes),
// after which a new handshake runs anyway.
const sessionFresh = 100 * time.Second

// derpGrace bounds how long AwaitReachable waits for our home relay
// connection after the peer answered, so that a dead relay does not block
// direct connections for long.
const derpGrace = 2 * time.Second

// AwaitReachable waits until the peer at ip is upserted and answers a
// ping (over any path), our home relay connection is up, and a WireGuard
// session with the peer is up, or until ctx ends. A live WireGuard session
// counts as reachable without a ping.
//
// The relay matters even when the pong came directly: the peer has not
// validated the direct path back yet, so it answers our WireGuard
// handshake through our home relay, and the relay drops packets for peers
// not yet connected to it.
//
// The WireGuard handshake starts with the first ping, as soon as the peer
// is known and our home relay is up, rather than after the pong: far from
// the server that saves a whole round trip through the relay. The peer
// may not know us yet when the handshake reaches it (it learns of us
// through the coordinator, in a race with our packets), and wireguard-go
// would then wait 5 s to try again; awaitSession starts a fresh handshake
// instead, as soon as the pong shows that the first one went unanswered.
func (c *Conn) AwaitReachable(ctx context.Context, ip netip.Addr) error {
	if ip == c.addr {
		return nil
	}
	// One channel for all attempts, so that a late pong to an earlier
	// ping counts as well.
	pongs := make(chan *ipnstate.PingResult, 1)
	var knownAt, quickUntil time.Time // set when the peer is first known
	var handshakeAt time.Time         // when the early handshake started
	interval := quickPingInterval
	for {
		changed := c.peerChangeCh()
		p, ok := c.lookupPeer(ip)
		if !ok {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return fmt.Errorf("await %s: %w: %w", ip, ErrUnknownPeer, ctx.Err())
			case <-c.closed:
				return errClosed
			}
		}
		if quickUntil.IsZero() {
			knownAt = time.Now()
			quickUntil = knownAt.Add(quickPingPhase)
			c.timeline("peer-introduced", "peer", ip)
		}
		if wp, ok := c.engine.PeerByKey(p.key()); ok {
			if hs := wp.LastHandshake(); !hs.IsZero() && time.Since(hs) < sessionFresh {
				c.timeline("session-up", "peer", ip, "fresh", true)
				return nil
			}
		}
		if handshakeAt.IsZero() && time.Since(knownAt) >= earlyHandshakeDelay && c.relayReadyFor(p) {
			// Any packet to the peer starts the handshake.
			c.engine.Ping(ip, tailcfg.PingICMP, 0, func(*ipnstate.PingResult) {})
			handshakeAt = time.Now()
			c.timeline("handshake-start", "peer", ip, "early", true)
		}
		c.sendPing(ip, pongs)
		t := time.NewTimer(interval)
		select {
		case res := <-pongs:
			t.Stop()
			if res.Err == "" {
				pr := pingResult(res)
				c.timeline("pong", "peer", ip, "path", pr.path(), "latency_ms", pr.Latency.Milliseconds())
				if err := c.awaitHomeDERP(ctx); err != nil {
					return err
				}
				if res.Endpoint == "" {
					c.pursueDirect(ip, p.key())
				}
				return c.awaitSession(ctx, ip, p.key(), pr, handshakeAt)
			}
			// "unknown peer" races with UpsertPeer reaching magicsock;
			// anything else is worth a retry too, after the interval.
			if err := c.sleepCtx(ctx, interval); err != nil {
				return fmt.Errorf("await %s: %s: %w", ip, res.Err, err)
			}
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("await %s: no answer: %w", ip, ctx.Err())
		case <-c.closed:
			t.Stop()
			return errClosed
		}
		switch {
		case time.Now().Before(quickUntil):
		case interval < firstPingInterval:
			interval = firstPingInterval
		default:
			interval = min(interval*2, maxPingInterval)
		}
	}
}

// earlyHandshakeDelay is how long after the peer is introduced to us
// AwaitReachable starts the WireGuard handshake without waiting for a
// pong. The peer learns of us at about the same time, through the same
// server: our node went to the coordinator when it introduced the peer,
// and both reach the peer after the same trip through the server, our
// packets through the relay and our node through its coordination
// WebSocket. Sent at once, the handshake beat the node, and was dropped,
// in most runs of `tether ssh` with 100 ms between the server and each
// peer; the peer needs a little time to take the node in. Near the server
// a pong comes sooner than this, and the handshake starts after it, as it
// always did.
const earlyHandshakeDelay = 50 * time.Millisecond

// path names the path a pong came by, for logs.
func (r PingResult) path() string {
	switch {
	case r.Direct:
		return "direct"
	case r.UDPRelay:
		return "relay"
	}
	return "derp"
}

// How long awaitSession waits for a WireGuard handshake before starting a
// fresh one: a few round trips of the path the pong took, at least
// handshakeRetryMin, doubling each time up to handshakeRetryMax.
// wireguard-go resends a lost initiation only after 5 s (RekeyTimeout),
// and one is lost whenever magicsock replaces its relay connection just
// then: it does that right after start when its first network check
// reports a send error, which on loopback happened in ~3% of
// \`tether ssh WS -- true\` runs, each then taking 5.3 s.
const (
	handshakeRetryRTTs = 4
	handshakeRetryMin  = 200 * time.Millisecond
	handshakeRetryMax  = 4 * time.Second
)

// earlySlack is how long after its answer was due an early handshake (one
// started before the pong) is still waited for: the peer's and our own
// processing, on a busy machine.
const earlySlack = 20 * time.Millisecond

// awaitSession makes sure a WireGuard session with the peer (key k, at ip)
// is up: it sends a packet through WireGuard, which starts the handshake,
// and waits for the handshake to complete. When one takes longer than
// its wait (see handshakeRetryMin; rtt is the pong's latency), it drops the
// device's peer, which the next packet recreates with a new handshake at
// once.
//
// early, if not zero, is when a handshake was started before the pong
// came. Its answer is due one round trip after it started: if the peer
// knew us by then, that is no later than the pong for a handshake started
// before the answered ping, and one round trip after the start for one
// started later. Whatever has not come by then (and earlySlack) was
// dropped by a peer that did not know us yet. After a direct pong it is
// not waited for at all: it went through the relay, before the direct
// path was known, and its answer would take the relay's way back, while a
// fresh one takes a direct round trip.
func (c *Conn) awaitSession(ctx context.Context, ip netip.Addr, k key.NodePublic, pong PingResult, early time.Time) error {
	rtt := pong.Latency
	if !early.IsZero() {
		due := early.Add(rtt)
		if pong.Direct {
			due = time.Time{}
		}
		if now := time.Now(); due.Before(now) {
			due = now
		}
		if !pong.Direct {
			due = due.Add(earlySlack)
		}
		for {
			if c.sessionUp(k) {
				c.timeline("session-up", "peer", ip, "early", true)
				return nil
			}
			if !time.Now().Before(due) {
				break
			}
			if err := c.sleepCtx(ctx, 2*time.Millisecond); err != nil {
				return fmt.Errorf("await %s: no WireGuard handshake: %w", ip, err)
			}
		}
		c.logger.Debug("early WireGuard handshake unanswered; starting a fresh one", "peer", ip)
		c.timeline("handshake-restart", "peer", ip)
		c.engine.ResetDevicePeer(k)
	}
	wait := min(max(handshakeRetryRTTs*rtt, handshakeRetryMin), handshakeRetryMax)
	for {
		// Any packet to the peer will do; the echo's answer is not needed.
		c.engine.Ping(ip, tailcfg.PingICMP, 0, func(*ipnstate.PingResult) {})
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if c.sessionUp(k) {
				c.timeline("session-up", "peer", ip)
				return nil
			}
			if err := c.sleepCtx(ctx, 2*time.Millisecond); err != nil {
				return fmt.Errorf("await %s: no WireGuard handshake: %w", ip, err)
			}
		}
		c.logger.Debug("WireGuard handshake unanswered; starting a fresh one", "peer", ip, "after", wait)
		c.timeline("handshake-restart", "peer", ip)
		c.engine.ResetDevicePeer(k)
		wait = min(wait*2, handshakeRetryMax)
	}
}

// sessionUp reports whether WireGuard holds a session with the peer whose
// key is k.
func (c *Conn) sessionUp(k key.NodePublic) bool {
	if wp, ok := c.engine.PeerByKey(k); ok {
		if hs := wp.LastHandshake(); !hs.IsZero() && time.Since(hs) < sessionLifetime {
			return true
		}
	}
	return false
}

// relayReadyFor reports whether a WireGuard handshake with p may start:
// whether its answer, which comes through our home relay until a direct
// path is validated, will find us there. It will once our home relay
// connection is up, or at once when p's home is ours: our handshake then
// travels on that very connection, after the frame that registers us.
func (c *Conn) relayReadyFor(p *peer) bool {
	c.mu.Lock()
	home := c.homeDERP
	c.mu.Unlock()
	return home != 0 && p.node.PreferredDERP == home || c.homeDERPUp()
}

// homeDERPUp reports whether our home relay connection has delivered its
// first frame (or there is no home relay).
func (c *Conn) homeDERPUp() bool {
	c.mu.Lock()
	home := c.homeDERP
	c.mu.Unlock()
	return home == 0 || !c.health.GetDERPRegionReceivedTime(home).IsZero()
}

// awaitHomeDERP waits until our home relay connection has delivered its
// first frame, for at most derpGrace. It returns an error only if ctx ends
// or the Conn closes.
func (c *Conn) awaitHomeDERP(ctx context.Context) error {
	deadline := time.Now().Add(derpGrace)
	for {
		if c.homeDERPUp() {
			return nil
		}
		if time.Now().After(deadline) {
			c.logger.Debug("home relay not connected; dialing anyway")
			return nil
		}
		if err := c.sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}
