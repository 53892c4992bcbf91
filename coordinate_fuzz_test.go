package tether_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"tailscale.com/types/key"
)

// fuzzPeerID is the peer whose connection the fuzzed messages arrive on.
var fuzzPeerID = uuid.MustParse("0b5c2e3a-7d41-4f0e-9a63-2f1d8c4b9e77")

// FuzzCoordinateRequest decodes coordination messages as the coordinator
// does (one JSON object, then Node.Validate for the sending peer). A node
// that passes must be within the protocol's bounds, claim only the peer's
// own address, survive an encode/decode round trip unchanged, and fit in
// one message when the coordinator forwards it to a peer.
func FuzzCoordinateRequest(f *testing.F) {
	node := validFuzzNode()
	for _, req := range []tether.CoordinateRequest{
		{Node: node},
		{Disconnect: true},
		{},
	} {
		b, err := json.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"node": {"key": "nodekey:zz"}}`))
	f.Add([]byte(`{"node": null, "disconnect": false}`))
	f.Add([]byte(`{"node": {"addresses": ["fd7a:115c:a1e0::/48"], "preferred_derp": -1}}`))
	f.Add([]byte(`{"node": {"derp_latency": {"1": 0.01, "2": 1e308}, "endpoints": ["[::1]:41641", "192.0.2.1:0"]}}`))

	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > tether.MaxCoordinateMessage {
			return // refused before decoding (coordinator.WebSocket.Recv)
		}
		var req tether.CoordinateRequest
		if err := json.Unmarshal(msg, &req); err != nil || req.Node == nil {
			return
		}
		n := req.Node
		if err := n.Validate(fuzzPeerID); err != nil {
			return
		}
		switch {
		case n.Key.IsZero() || n.DiscoKey.IsZero():
			t.Fatalf("valid node without keys: %+v", n)
		case len(n.Addresses) < 1 || len(n.Addresses) > tether.MaxNodeAddresses:
			t.Fatalf("valid node has %d addresses", len(n.Addresses))
		case len(n.Endpoints) > tether.MaxNodeEndpoints:
			t.Fatalf("valid node has %d endpoints", len(n.Endpoints))
		case len(n.DERPLatency) > tether.MaxNodeDERPRegions:
			t.Fatalf("valid node has %d latencies", len(n.DERPLatency))
		case n.PreferredDERP < 0:
			t.Fatalf("valid node has preferred DERP %d", n.PreferredDERP)
		}
		own := netip.PrefixFrom(tether.TunnelIP(fuzzPeerID), 128)
		for _, a := range n.Addresses {
			if a != own || !tether.TunnelPrefix.Contains(a.Addr()) {
				t.Fatalf("valid node claims %s, not its own %s", a, own)
			}
		}
		for k := range n.DERPLatency {
			if len(k) > 32 {
				t.Fatalf("valid node has latency key of %d bytes", len(k))
			}
		}

		// What the coordinator forwards must fit in one message.
		fwd, err := json.Marshal(tether.CoordinateResponse{Peers: []tether.PeerUpdate{{ID: fuzzPeerID, Kind: tether.PeerNode, Node: n}}})
		if err != nil {
			t.Fatalf("valid node does not encode: %v", err)
		}
		if len(fwd) > tether.MaxCoordinateMessage {
			t.Fatalf("valid node forwards as %d bytes, over %d", len(fwd), tether.MaxCoordinateMessage)
		}

		// A round trip changes nothing, and the result is still valid.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		var again tether.CoordinateRequest
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("re-encoded request %s does not decode: %v", b, err)
		}
		if again.Node == nil {
			t.Fatalf("re-encoded request %s lost its node", b)
		}
		if err := again.Node.Validate(fuzzPeerID); err != nil {
			t.Fatalf("re-encoded node %s is no longer valid: %v", b, err)
		}
		if !sameNode(n, again.Node) || req.Disconnect != again.Disconnect {
			t.Fatalf("round trip changed the request:\n%+v\n%+v", req, again)
		}
	})
}

// sameNode compares nodes as peers see them: the instant of AsOf, not its
// time zone, and an empty list or map the same as a missing one (both are
// omitted on the wire).
func sameNode(a, b *tether.Node) bool {
	if !a.AsOf.Equal(b.AsOf) {
		return false
	}
	norm := func(n tether.Node) tether.Node {
		n.AsOf = time.Time{}
		if len(n.DERPLatency) == 0 {
			n.DERPLatency = nil
		}
		if len(n.Endpoints) == 0 {
			n.Endpoints = nil
		}
		if len(n.Addresses) == 0 {
			n.Addresses = nil
		}
		return n
	}
	return reflect.DeepEqual(norm(*a), norm(*b))
}

func validFuzzNode() *tether.Node {
	// Fixed keys, so that the seed corpus is the same on every run.
	var nk key.NodePublic
	var dk key.DiscoPublic
	if err := nk.UnmarshalText([]byte("nodekey:5e4c1c4d8a3f1b2e6d7c9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d")); err != nil {
		panic(err)
	}
	if err := dk.UnmarshalText([]byte("discokey:0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c")); err != nil {
		panic(err)
	}
	return &tether.Node{
		Key:           nk,
		DiscoKey:      dk,
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(fuzzPeerID), 128)},
		PreferredDERP: 999,
		DERPLatency:   map[string]float64{"999-v4": 0.0012, "1-v6": 0.25},
		Endpoints:     []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:41641"), netip.MustParseAddrPort("[2001:db8::1]:41641")},
		AsOf:          time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.FixedZone("", 3600)),
	}
}
