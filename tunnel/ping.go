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
func (c *Conn) AwaitReachable(ctx context.Context, ip netip.Addr) error {
	if ip == c.addr {
		return nil
	}
	// One channel for all attempts, so that a late pong to an earlier
	// ping counts as well.
	pongs := make(chan *ipnstate.PingResult, 1)
	var quickUntil time.Time // set when the peer is first known
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
			quickUntil = time.Now().Add(quickPingPhase)
		}
		if wp, ok := c.engine.PeerByKey(p.key()); ok {
			if hs := wp.LastHandshake(); !hs.IsZero() && time.Since(hs) < sessionFresh {
				return nil
			}
		}
		c.sendPing(ip, pongs)
		t := time.NewTimer(interval)
		select {
		case res := <-pongs:
			t.Stop()
			if res.Err == "" {
				if err := c.awaitHomeDERP(ctx); err != nil {
					return err
				}
				if res.Endpoint == "" {
					c.pursueDirect(ip, p.key())
				}
				return c.awaitSession(ctx, ip, p.key(), pingResult(res).Latency)
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

// awaitSession makes sure a WireGuard session with the peer (key k, at ip)
// is up: it sends a packet through WireGuard, which starts the handshake,
// and waits for the handshake to complete. When one takes longer than
// its wait (see handshakeRetryMin; rtt is the pong's latency), it drops the
// device's peer, which the next packet recreates with a new handshake at
// once.
func (c *Conn) awaitSession(ctx context.Context, ip netip.Addr, k key.NodePublic, rtt time.Duration) error {
	wait := min(max(handshakeRetryRTTs*rtt, handshakeRetryMin), handshakeRetryMax)
	for {
		// Any packet to the peer will do; the echo's answer is not needed.
		c.engine.Ping(ip, tailcfg.PingICMP, 0, func(*ipnstate.PingResult) {})
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if wp, ok := c.engine.PeerByKey(k); ok {
				if hs := wp.LastHandshake(); !hs.IsZero() && time.Since(hs) < sessionLifetime {
					return nil
				}
			}
			if err := c.sleepCtx(ctx, 2*time.Millisecond); err != nil {
				return fmt.Errorf("await %s: no WireGuard handshake: %w", ip, err)
			}
		}
		c.logger.Debug("WireGuard handshake unanswered; starting a fresh one", "peer", ip, "after", wait)
		c.engine.ResetDevicePeer(k)
		wait = min(wait*2, handshakeRetryMax)
	}
}

// awaitHomeDERP waits until our home relay connection has delivered its
// first frame, for at most derpGrace. It returns an error only if ctx ends
// or the Conn closes.
func (c *Conn) awaitHomeDERP(ctx context.Context) error {
	deadline := time.Now().Add(derpGrace)
	for {
		c.mu.Lock()
		home := c.homeDERP
		c.mu.Unlock()
		if home == 0 || !c.health.GetDERPRegionReceivedTime(home).IsZero() {
			return nil
		}
		if time.Now().After(deadline) {
			c.logger.Debug("home relay not connected; dialing anyway", "region", home)
			return nil
		}
		if err := c.sleepCtx(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
}
