package tunnel

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/ipproto"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/wgengine/filter"

	"github.com/tetherdev/tether"
)

func testNode(id uuid.UUID) *tether.Node {
	return &tether.Node{
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
		PreferredDERP: 1,
	}
}

func TestUpsertPeerRejects(t *testing.T) {
	c := newConn(t, "c", Options{DERPMap: &tailcfg.DERPMap{}})
	taken := uuid.New()
	takenNode := testNode(taken)
	if err := c.UpsertPeer(taken, takenNode); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		id     uuid.UUID
		mutate func(id uuid.UUID, n *tether.Node)
		want   string
	}{
		// Malformed nodes (addresses, missing keys) never get here: they
		// are dropped where they enter the process (TestNodeValidate,
		// coordinator's TestInvalidNode, coordclient's
		// TestInvalidNodesDropped).
		{"another peer's key", uuid.New(), func(id uuid.UUID, n *tether.Node) {
			n.Key = takenNode.Key
		}, "belongs to peer"},
		{"ourselves by ID", c.ID(), func(id uuid.UUID, n *tether.Node) {}, "this peer itself"},
		{"ourselves by key", uuid.New(), func(id uuid.UUID, n *tether.Node) {
			n.Key = c.key.Public()
		}, "this peer itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNode(tc.id)
			tc.mutate(tc.id, n)
			err := c.UpsertPeer(tc.id, n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UpsertPeer = %v, want an error containing %q", err, tc.want)
			}
			if _, ok := c.lookupPeer(tether.TunnelIP(tc.id)); ok && tc.id != taken {
				t.Error("the rejected peer was added")
			}
		})
	}
	if got := c.Peers(); len(got) != 1 || got[0] != taken {
		t.Errorf("peers = %v, want only %v", got, taken)
	}
}

// TestUpsertPeerNewKey checks that a peer that restarted with new keys
// replaces its old self, and that the old key stops counting.
func TestUpsertPeerNewKey(t *testing.T) {
	c := newConn(t, "c", Options{DERPMap: &tailcfg.DERPMap{}})
	id := uuid.New()
	first, second := testNode(id), testNode(id)
	for _, n := range []*tether.Node{first, second} {
		if err := c.UpsertPeer(id, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := c.peerAllowedIPs(first.Key); ok {
		t.Error("the old key is still a WireGuard peer")
	}
	if ips, ok := c.peerAllowedIPs(second.Key); !ok || len(ips) != 1 || ips[0].Addr() != tether.TunnelIP(id) {
		t.Errorf("allowed IPs of the new key = %v, %v", ips, ok)
	}
	// The old key is free for another peer now.
	other := uuid.New()
	n := testNode(other)
	n.Key = first.Key
	if err := c.UpsertPeer(other, n); err != nil {
		t.Errorf("reuse of a released key: %v", err)
	}
}

// TestFilter checks the authorization rule itself: new inbound flows only
// from peers' addresses, only to ours.
func TestFilter(t *testing.T) {
	self := netip.PrefixFrom(tether.TunnelIP(uuid.New()), 128)
	peer := tether.TunnelIP(uuid.New())
	stranger := tether.TunnelIP(uuid.New())
	f := newFilter(self, []netip.Prefix{netip.PrefixFrom(peer, 128)}, nil, nil, logger.Discard)
	empty := newFilter(self, nil, nil, nil, logger.Discard)

	for _, tc := range []struct {
		name  string
		f     *filter.Filter
		src   netip.Addr
		dst   netip.Addr
		proto ipproto.Proto
		want  filter.Response
	}{
		{"peer tcp", f, peer, self.Addr(), ipproto.TCP, filter.Accept},
		{"peer udp", f, peer, self.Addr(), ipproto.UDP, filter.Accept},
		{"stranger tcp", f, stranger, self.Addr(), ipproto.TCP, filter.Drop},
		{"stranger udp", f, stranger, self.Addr(), ipproto.UDP, filter.Drop},
		{"peer to another address", f, peer, stranger, ipproto.TCP, filter.Drop},
		{"no peers at all", empty, peer, self.Addr(), ipproto.TCP, filter.Drop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Check(tc.src, tc.dst, 22, tc.proto); got != tc.want {
				t.Errorf("Check = %v, want %v", got, tc.want)
			}
		})
	}
}
