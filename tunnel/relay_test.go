package tunnel

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/net/udprelay"
	"tailscale.com/net/udprelay/endpoint"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/views"
	"tailscale.com/util/usermetric"

	"github.com/tetherdev/tether/internal/testwait"
)

// newTestRelay starts a relay's Conn with a real udprelay.Server on
// loopback, which allocates endpoints for the pairs allowed approves.
func newTestRelay(t *testing.T, opts Options, allowed func(from uuid.UUID, pair [2]key.DiscoPublic) bool) *Conn {
	t.Helper()
	logf := logger.Discard
	if debugLogs {
		logf = t.Logf
	}
	// udprelay.Server does not say which port it bound: pick one.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()
	var metrics usermetric.Registry
	srv, err := udprelay.NewServer(logf, port, true, &metrics, nil)
	if err != nil {
		t.Fatalf("start UDP relay server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetStaticAddrPorts(views.SliceOf([]netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}))
	opts.DisableUDPRelay = true
	opts.BlockEndpoints = true
	opts.RelayAllocator = func(from uuid.UUID, pair [2]key.DiscoPublic) (endpoint.ServerEndpoint, error) {
		if !allowed(from, pair) {
			return endpoint.ServerEndpoint{}, errors.New("pair not allowed")
		}
		return srv.AllocateEndpoint(pair[0], pair[1])
	}
	return newConn(t, "relay", opts)
}

// introduceRelay tells each of peers about relay r, and r about them, as
// the coordinator would.
func introduceRelay(t *testing.T, r *Conn, peers ...*Conn) {
	t.Helper()
	ctx := testContext(t)
	rn := awaitNode(t, ctx, r)
	for _, p := range peers {
		if err := p.UpsertRelay(r.ID(), rn); err != nil {
			t.Fatalf("upsert relay into %s: %v", p.ID(), err)
		}
		if err := r.UpsertRelayClient(p.ID(), awaitNode(t, ctx, p)); err != nil {
			t.Fatalf("upsert relay client %s: %v", p.ID(), err)
		}
	}
}

// TestUDPRelay checks that two peers that cannot go direct (both block
// endpoints) move from DERP to the UDP relay, that data flows there, and
// that the relay is no peer: it cannot reach them even when it pretends
// to be one.
func TestUDPRelay(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a, b := pair(t, dm, Options{BlockEndpoints: true}, Options{BlockEndpoints: true})
	r := newTestRelay(t, Options{DERPMap: dm}, func(from uuid.UUID, pair [2]key.DiscoPublic) bool {
		return (from == a.ID() || from == b.ID()) && key.NewSortedPairOfDiscoPublic(pair[0], pair[1]) ==
			key.NewSortedPairOfDiscoPublic(a.magic.DiscoPublicKey(), b.magic.DiscoPublicKey())
	})
	introduceRelay(t, r, a, b)
	ctx := testContext(t)

	conn := dialEcho(t, ctx, a, b, 80)
	relayAt := ""
	for relayAt == "" {
		if err := echoOnce(conn, "hello", time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		res, ok := pingOnce(t, ctx, a, b.Addr())
		if !ok {
			continue
		}
		if res.Direct {
			t.Fatalf("ping went direct (%s) with endpoints blocked", res.Endpoint)
		}
		if res.UDPRelay {
			relayAt = res.Endpoint
		}
	}
	if ap, err := netip.ParseAddrPort(relayAt); err != nil || !ap.Addr().IsLoopback() {
		t.Errorf("relay endpoint = %q; want the relay's loopback address", relayAt)
	}
	waitFor(t, ctx, "a's status says the UDP relay", func() bool {
		_ = echoOnce(conn, "status", time.Now().Add(5*time.Second))
		p := a.Status(ctx).Peers
		return len(p) == 1 && p[0].UDPRelay && p[0].Endpoint == relayAt
	})
	if got := a.Peers(); len(got) != 1 || got[0] != b.ID() {
		t.Errorf("a's peers = %v; want only b (a relay is not a peer)", got)
	}

	// The relay pretends to be a's peer: a never made it one, so its
	// WireGuard handshakes and packets go nowhere.
	r.RemovePeer(a.ID())
	if err := r.UpsertPeer(a.ID(), awaitNode(t, ctx, a)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Listen("tcp", 22); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, shortTimeout)
	defer cancel()
	if c, err := r.DialContext(dctx, "tcp", netip.AddrPortFrom(a.Addr(), 22)); err == nil {
		c.Close()
		t.Fatal("the relay dialed a peer that only knows it as a relay")
	}
}

// TestUDPRelayRefused checks that a pair the relay refuses stays on DERP,
// and that a Conn with DisableUDPRelay never asks.
func TestUDPRelayRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allow   bool
		disable bool
	}{
		{name: "relay refuses the pair"},
		{name: "peers disable UDP relays", allow: true, disable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dm := newDERP(t, derpOptions{})
			opts := Options{BlockEndpoints: true, DisableUDPRelay: tc.disable}
			a, b := pair(t, dm, opts, opts)
			asked := make(chan struct{}, 100)
			r := newTestRelay(t, Options{DERPMap: dm}, func(uuid.UUID, [2]key.DiscoPublic) bool {
				asked <- struct{}{}
				return tc.allow
			})
			introduceRelay(t, r, a, b)
			ctx := testContext(t)
			conn := dialEcho(t, ctx, a, b, 80)
			deadline := time.Now().Add(shortTimeout)
			for time.Now().Before(deadline) {
				if err := echoOnce(conn, "hello", time.Now().Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
				res, ok := pingOnce(t, ctx, a, b.Addr())
				if ok && (res.Direct || res.UDPRelay) {
					t.Fatalf("ping = %+v; want DERP", res)
				}
			}
			if tc.disable && len(asked) > 0 {
				t.Errorf("peers with UDP relays disabled asked the relay %d times", len(asked))
			}
		})
	}
}

// pingOnce pings ip from c, and reports false if no pong came within a
// second (a ping may simply be lost).
func pingOnce(t *testing.T, ctx context.Context, c *Conn, ip netip.Addr) (PingResult, bool) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res, err := c.Ping(pctx, ip)
	switch {
	case err == nil:
		return res, true
	case pctx.Err() != nil && ctx.Err() == nil:
		return PingResult{}, false
	}
	t.Fatal(err)
	return PingResult{}, false
}

// waitFor polls cond until it holds, or fails the test once ctx ends.
var waitFor = testwait.Until

// relayAfterRebindTimeout bounds the wait for the relay path to come back
// after a rebind: magicsock alone looks for it again only 30 s after it
// last did (discoverUDPRelayPathsInterval), with the fix within a few
// round trips.
const relayAfterRebindTimeout = 15 * time.Second

// TestUDPRelayAfterRebind checks that a path on the UDP relay comes back
// to the relay soon after magicsock rebinds its sockets (which forgets
// every path), rather than staying on DERP until magicsock's next relay
// search 30 s later. The TCP connection through it never breaks.
func TestUDPRelayAfterRebind(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a, b := pair(t, dm, Options{BlockEndpoints: true}, Options{BlockEndpoints: true})
	r := newTestRelay(t, Options{DERPMap: dm}, func(uuid.UUID, [2]key.DiscoPublic) bool { return true })
	introduceRelay(t, r, a, b)
	ctx := testContext(t)
	conn := dialEcho(t, ctx, a, b, 80)
	// onRelay exchanges data and pings until a pong comes over the relay,
	// for at most timeout, and reports how long that took.
	onRelay := func(what string, timeout time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for time.Since(start) < timeout {
			if err := echoOnce(conn, "hello", time.Now().Add(5*time.Second)); err != nil {
				t.Fatalf("%s: the connection broke: %v", what, err)
			}
			if res, ok := pingOnce(t, ctx, a, b.Addr()); ok && res.UDPRelay {
				return time.Since(start)
			}
		}
		t.Fatalf("%s: no pong over the UDP relay within %s", what, timeout)
		return 0
	}
	onRelay("at start", relayAfterRebindTimeout)

	a.magic.Rebind()
	took := onRelay("after a rebind", relayAfterRebindTimeout)
	t.Logf("FIGURE on the UDP relay again %s after the rebind", took.Round(time.Millisecond))
}
