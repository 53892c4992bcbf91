package tunnel

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// nodeWatcher collects the nodes a Conn reports.
type nodeWatcher chan *tether.Node

func watchNodes(c *Conn) nodeWatcher {
	w := make(nodeWatcher, 100)
	c.SetNodeCallback(func(n *tether.Node) {
		select {
		case w <- n:
		default:
		}
	})
	return w
}

// next returns the first node reported from now on that ok accepts.
func (w nodeWatcher) next(t *testing.T, ctx context.Context, what string, ok func(*tether.Node) bool) *tether.Node {
	t.Helper()
	for {
		select {
		case n := <-w:
			if ok(n) {
				return n
			}
		case <-ctx.Done():
			t.Fatalf("no node %s before the deadline", what)
			return nil
		}
	}
}

func TestNode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stun  bool
		block bool
	}{
		{"without STUN", false, false},
		{"with STUN", true, false},
		{"blocked", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dm := newDERP(t, derpOptions{stun: tc.stun})
			start := time.Now()
			c := newConn(t, "c", Options{DERPMap: dm, BlockEndpoints: tc.block})
			ctx := testContext(t)
			// Peers on the same network should not wait for a netcheck
			// (3 s without STUN answers) to learn where we are. The
			// first node may come a moment before the local endpoints
			// (the sockets' ports arrive on the library's event bus):
			// what counts is how soon a node has them.
			n := watchNodes(c).next(t, ctx, "with endpoints", func(n *tether.Node) bool { return tc.block || len(n.Endpoints) > 0 })
			if d := time.Since(start); d > time.Second {
				t.Errorf("first node with endpoints after %v", d)
			}
			if err := n.Validate(c.ID()); err != nil {
				t.Errorf("node does not validate: %v", err)
			}
			if n.Key != c.key.Public() || n.PreferredDERP != 1 || n.AsOf.IsZero() {
				t.Errorf("node = %+v; want our key, home region 1 and a time", n)
			}
			if tc.block {
				if len(n.Endpoints) != 0 {
					t.Errorf("blocked node publishes %v", n.Endpoints)
				}
				return
			}
			if len(n.Endpoints) == 0 {
				t.Fatal("node publishes no endpoints")
			}
			for _, ep := range n.Endpoints {
				if !isLocalAddr(ep.Addr()) && !(tc.stun && ep.Addr().IsLoopback()) {
					t.Errorf("endpoint %v is not a local address", ep)
				}
			}
			if tc.stun {
				// The STUN server sees us at 127.0.0.1; that endpoint and a
				// latency to region 1 come from the netcheck.
				n = c.awaitNodeWith(t, ctx, func(n *tether.Node) bool {
					return slices.ContainsFunc(n.Endpoints, func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() }) &&
						n.DERPLatency["1"] > 0
				})
				if st := c.Status(ctx); st.Netcheck == nil || !st.Netcheck.UDP || st.Netcheck.DERPLatency[1] <= 0 {
					t.Errorf("netcheck = %+v; want UDP and a latency to region 1", st.Netcheck)
				}
			}
		})
	}
}

// awaitNodeWith polls Node until ok accepts it.
func (c *Conn) awaitNodeWith(t *testing.T, ctx context.Context, ok func(*tether.Node) bool) *tether.Node {
	t.Helper()
	for {
		if n := c.Node(); n != nil && ok(n) {
			return n
		}
		if err := c.sleepCtx(ctx, 10*time.Millisecond); err != nil {
			t.Fatalf("node never became as expected; last %+v", c.Node())
		}
	}
}

// TestSetBlockEndpoints switches relay-only mode on a running pair: off,
// the node publishes endpoints and a direct path comes up; on, the node
// publishes none.
func TestSetBlockEndpoints(t *testing.T) {
	a, b := pair(t, newDERP(t, derpOptions{}), Options{BlockEndpoints: true}, Options{})
	ctx := testContext(t)
	if res := pingUntil(t, ctx, a, b.Addr(), func(PingResult) bool { return true }); res.Direct {
		t.Fatalf("ping = %+v while blocked", res)
	}

	w := make(nodeWatcher, 100)
	a.SetNodeCallback(func(n *tether.Node) {
		w <- n
		b.UpsertPeer(a.ID(), n)
	})
	w.next(t, ctx, "current", func(*tether.Node) bool { return true })
	a.SetBlockEndpoints(false)
	w.next(t, ctx, "with endpoints", func(n *tether.Node) bool { return len(n.Endpoints) > 0 })
	pingUntil(t, ctx, a, b.Addr(), func(r PingResult) bool { return r.Direct })
	pingUntil(t, ctx, b, a.Addr(), func(r PingResult) bool { return r.Direct })

	a.SetBlockEndpoints(true)
	w.next(t, ctx, "without endpoints", func(n *tether.Node) bool { return len(n.Endpoints) == 0 })
	if st := a.Status(ctx); !st.BlockEndpoints || len(st.Endpoints) != 0 {
		t.Errorf("status = %+v; want blocked, no endpoints", st)
	}
}

// TestNetInfoLatency checks how magicsock's per-family latencies become the
// node's per-region ones.
func TestNetInfoLatency(t *testing.T) {
	c := newConn(t, "c", Options{DERPMap: &tailcfg.DERPMap{}})
	c.onNetInfo(&tailcfg.NetInfo{
		PreferredDERP: 2,
		DERPLatency:   map[string]float64{"1-v4": 0.030, "1-v6": 0.020, "2-v4": 0.010, "bogus": 1},
	})
	n := c.Node()
	want := map[string]float64{"1": 0.020, "2": 0.010}
	if n.PreferredDERP != 2 || !maps.Equal(n.DERPLatency, want) {
		t.Errorf("node has home %d, latency %v; want 2, %v", n.PreferredDERP, n.DERPLatency, want)
	}
}
