package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// TestTCPEcho checks TCP both ways, and that the first dial after a cold
// start does not hit WireGuard's 5 s handshake retry.
func TestTCPEcho(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	start := time.Now()
	a, b := pair(t, dm, Options{}, Options{})
	ctx := testContext(t)

	for _, tc := range []struct {
		name          string
		server, dialr *Conn
	}{
		{"a to b", b, a},
		{"b to a", a, b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialEcho(t, ctx, tc.dialr, tc.server, 8080)
			if err := echoOnce(conn, "hello "+tc.name, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			t.Logf("first echo %v after start", time.Since(start))
		})
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("start to two echoes took %v; want well under WireGuard's 5 s retry", d)
	}
}

func TestUDPEcho(t *testing.T) {
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)

	pc, err := b.ListenPacket(9000)
	if err != nil {
		t.Fatal(err)
	}
	serveUDPEcho(t, pc)
	conn, err := a.DialContext(ctx, "udp", netip.AddrPortFrom(b.Addr(), 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// UDP may lose a datagram; one echo in a few tries is the claim.
	var lastErr error
	for range 5 {
		if lastErr = echoOnce(conn, "datagram", time.Now().Add(time.Second)); lastErr == nil {
			return
		}
	}
	t.Fatal(lastErr)
}

// TestDialWaitsForPeer dials a peer before the coordinator has introduced
// it: the dial waits for the node instead of failing.
func TestDialWaitsForPeer(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a := newConn(t, "a", Options{DERPMap: dm})
	b := newConn(t, "b", Options{DERPMap: dm})
	ctx := testContext(t)
	listenEcho(t, b, 22)

	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := a.DialContext(ctx, "tcp", netip.AddrPortFrom(b.Addr(), 22))
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("dial to an unknown peer returned early: %v", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	introduce(t, a, b)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.conn.Close()
	if err := echoOnce(r.conn, "late", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestPingDirect(t *testing.T) {
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)

	res := pingUntil(t, ctx, a, b.Addr(), func(r PingResult) bool { return r.Direct })
	ap, err := netip.ParseAddrPort(res.Endpoint)
	if err != nil {
		t.Fatalf("endpoint %q: %v", res.Endpoint, err)
	}
	if !isLocalAddr(ap.Addr()) {
		t.Errorf("direct endpoint %v is not an address of this machine", ap)
	}
	if !slices.Contains(b.Node().Endpoints, ap) {
		t.Errorf("direct endpoint %v is not one b published (%v)", ap, b.Node().Endpoints)
	}
	if res.Latency <= 0 || res.Latency > time.Second {
		t.Errorf("latency = %v", res.Latency)
	}

	// The status shows the same path once data has flowed.
	conn := dialEcho(t, ctx, a, b, 80)
	if err := echoOnce(conn, "status", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	st := a.Status(ctx)
	if len(st.Peers) != 1 {
		t.Fatalf("status has %d peers, want 1", len(st.Peers))
	}
	p := st.Peers[0]
	if p.ID != b.ID() || !p.Direct || p.Endpoint == "" || p.LastHandshake.IsZero() || p.RxBytes == 0 || p.TxBytes == 0 {
		t.Errorf("peer status = %+v; want b, direct, with a handshake and traffic", p)
	}
	if st.HomeDERP != 1 || st.HomeDERPCode != "test" || st.DERPConns == 0 || len(st.Endpoints) == 0 {
		t.Errorf("self status = %+v; want home 1 (test), connected, with endpoints", st)
	}
}

// TestRelayOnly checks that blocking endpoints on either side keeps the
// path on DERP, and that data still flows.
func TestRelayOnly(t *testing.T) {
	for _, tc := range []struct {
		name           string
		blockA, blockB bool
	}{
		{"a blocks", true, false},
		{"b blocks", false, true},
		{"both block", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t, newDERP(t, derpOptions{}), Options{BlockEndpoints: tc.blockA}, Options{BlockEndpoints: tc.blockB})
			ctx := testContext(t)
			for _, c := range []*Conn{a, b} {
				if n := awaitNode(t, ctx, c); c.blockEndpoints && len(n.Endpoints) > 0 {
					t.Errorf("blocked conn publishes endpoints %v", n.Endpoints)
				}
			}

			conn := dialEcho(t, ctx, a, b, 80)
			// Traffic is what makes magicsock try direct paths; without the
			// block, they come up within milliseconds here.
			for i := range 5 {
				if err := echoOnce(conn, "relayed", time.Now().Add(5*time.Second)); err != nil {
					t.Fatal(err)
				}
				for _, from := range []*Conn{a, b} {
					to := b
					if from == b {
						to = a
					}
					res, err := from.Ping(ctx, to.Addr())
					if err != nil {
						t.Fatal(err)
					}
					if res.Direct || res.DERPRegionID != 1 || res.DERPRegionCode != "test" {
						t.Fatalf("ping %d = %+v; want DERP region 1 (test)", i, res)
					}
				}
			}
			if p := a.Status(ctx).Peers[0]; p.Direct || p.DERPRegionCode != "test" {
				t.Errorf("peer status = %+v; want relayed through test", p)
			}
		})
	}
}

// TestUnintroducedPeer checks that only upserted peers get in: c knows a,
// but a was never told about c.
func TestUnintroducedPeer(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a, b := pair(t, dm, Options{}, Options{})
	c := newConn(t, "c", Options{DERPMap: dm})
	ctx := testContext(t)

	listenEcho(t, a, 22)
	if err := c.UpsertPeer(a.ID(), awaitNode(t, ctx, a)); err != nil {
		t.Fatal(err)
	}

	dialCtx, cancel := context.WithTimeout(ctx, shortTimeout)
	defer cancel()
	if conn, err := c.DialContext(dialCtx, "tcp", netip.AddrPortFrom(a.Addr(), 22)); err == nil {
		conn.Close()
		t.Fatal("a peer that was never introduced connected")
	}
	// The introduced peer gets in, so the refusal is about c.
	conn, err := b.DialContext(ctx, "tcp", netip.AddrPortFrom(a.Addr(), 22))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// TestRemovePeer checks that removing a peer cuts it off at once.
func TestRemovePeer(t *testing.T) {
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)
	conn := dialEcho(t, ctx, b, a, 22)
	if err := echoOnce(conn, "before", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}

	a.SetNodeCallback(nil) // stop re-introducing a to b; b stays a's would-be peer
	b.SetNodeCallback(nil)
	a.RemovePeer(b.ID())

	if _, err := a.Ping(ctx, b.Addr()); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("ping a removed peer: %v, want ErrUnknownPeer", err)
	}
	if err := echoOnce(conn, "during", time.Now().Add(shortTimeout)); err == nil {
		t.Error("an open connection still works after RemovePeer")
	}
	dialCtx, cancel := context.WithTimeout(ctx, shortTimeout)
	defer cancel()
	if c, err := b.DialContext(dialCtx, "tcp", netip.AddrPortFrom(a.Addr(), 22)); err == nil {
		c.Close()
		t.Error("a removed peer connected")
	}

}

// TestReAddPeer checks that a peer removed and added again can talk at
// once: it still holds the WireGuard session we dropped, and without help
// would send into it unanswered until WireGuard gives up (15 s).
func TestReAddPeer(t *testing.T) {
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)
	pc, err := a.ListenPacket(53)
	if err != nil {
		t.Fatal(err)
	}
	serveUDPEcho(t, pc)
	// UDP leaves nothing to retransmit after the removal, which would
	// start a new session by itself.
	conn, err := b.DialContext(ctx, "udp", netip.AddrPortFrom(a.Addr(), 53))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := echoOnce(conn, "before", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.SetNodeCallback(nil)
	b.SetNodeCallback(nil)
	a.RemovePeer(b.ID())

	readded := time.Now()
	if err := a.UpsertPeer(b.ID(), awaitNode(t, ctx, b)); err != nil {
		t.Fatal(err)
	}
	hsCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for b.Status(ctx).Peers[0].LastHandshake.Before(readded) {
		if err := b.sleepCtx(hsCtx, 10*time.Millisecond); err != nil {
			t.Fatal("a did not start a new WireGuard session after re-adding b")
		}
	}
	if err := echoOnce(conn, "after", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestForward(t *testing.T) {
	// Registered first so that it runs after the Conns close, which ends
	// the handlers' connections.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)

	// Without a handler, a port with no listener refuses.
	dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := b.DialContext(dialCtx, "tcp", netip.AddrPortFrom(a.Addr(), 5555)); err == nil {
		conn.Close()
		t.Fatal("dial to a port with no listener and no forwarder succeeded")
	} else if dialCtx.Err() != nil {
		t.Fatalf("dial was not refused, it timed out: %v", err)
	}

	type flow struct {
		proto    string
		src, dst netip.AddrPort
	}
	flows := make(chan flow, 2)
	a.SetForwardTCP(func(conn net.Conn, dst netip.AddrPort) {
		flows <- flow{"tcp", addrPortOf(conn.RemoteAddr()), dst}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	})
	a.SetForwardUDP(func(conn net.Conn, dst netip.AddrPort) {
		flows <- flow{"udp", addrPortOf(conn.RemoteAddr()), dst}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			buf := make([]byte, 1500)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // the idle timeout
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				conn.Write(buf[:n])
			}
		}()
	})

	for _, proto := range []string{"tcp", "udp"} {
		dst := netip.AddrPortFrom(a.Addr(), 5555)
		conn, err := b.DialContext(ctx, proto, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := echoOnce(conn, "forwarded "+proto, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		f := <-flows
		if f.proto != proto || f.dst != dst || f.src.Addr() != b.Addr() {
			t.Errorf("forwarded flow = %+v; want %s from %v to %v", f, proto, b.Addr(), dst)
		}
	}
}

// TestClose checks that Close ends what the Conn handed out, and leaves
// no goroutine behind.
func TestClose(t *testing.T) {
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(func() {
		if err := goleak.Find(); err != nil {
			t.Error(err)
		}
	})
	a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{})
	ctx := testContext(t)
	ln, err := b.Listen("tcp", 22)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := b.ListenPacket(53)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		accepted <- err
	}()
	read := make(chan error, 1)
	go func() {
		_, _, err := pc.ReadFrom(make([]byte, 10))
		read <- err
	}()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-accepted; err == nil {
		t.Error("Accept succeeded after Close")
	}
	if err := <-read; err == nil {
		t.Error("ReadFrom succeeded after Close")
	}
	if _, err := b.Listen("tcp", 23); err == nil {
		t.Error("Listen succeeded after Close")
	}
	if err := b.UpsertPeer(a.ID(), awaitNode(t, ctx, a)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("UpsertPeer after Close: %v, want net.ErrClosed", err)
	}
}

// pingUntil pings ip from c until ok accepts a result.
func pingUntil(t testing.TB, ctx context.Context, c *Conn, ip netip.Addr, ok func(PingResult) bool) PingResult {
	t.Helper()
	var last PingResult
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := c.Ping(pctx, ip)
		cancel()
		if err == nil {
			if ok(res) {
				return res
			}
			last = res
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no acceptable ping result before the deadline; last %+v", last)
	return last
}

// awaitNode returns c's node once it is ready.
func awaitNode(t testing.TB, ctx context.Context, c *Conn) *tether.Node {
	t.Helper()
	for {
		if n := c.Node(); n != nil {
			return n
		}
		select {
		case <-ctx.Done():
			t.Fatal("node never ready")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func isLocalAddr(ip netip.Addr) bool {
	regular, loopback, err := netmon.LocalAddresses()
	if err != nil {
		return false
	}
	return slices.Contains(regular, ip) || slices.Contains(loopback, ip)
}

// TestDialSelf checks that a Conn reaches its own listeners, as a process
// that is both ends of a tunnel (the dev server) may.
func TestDialSelf(t *testing.T) {
	c := newConn(t, "c", Options{DERPMap: &tailcfg.DERPMap{}})
	conn := dialEcho(t, testContext(t), c, c, 22)
	if err := echoOnce(conn, "self", time.Now().Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
}
