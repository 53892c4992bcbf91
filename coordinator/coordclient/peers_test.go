package coordclient_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator/coordclient"
)

func nodeUpdate(id uuid.UUID, marker int) tether.PeerUpdate {
	return tether.PeerUpdate{ID: id, Kind: tether.PeerNode, Node: newNode(id, marker)}
}

func peerUpdate(id uuid.UUID, kind tether.PeerUpdateKind) tether.PeerUpdate {
	return tether.PeerUpdate{ID: id, Kind: kind, Reason: "test"}
}

func apply(ps *coordclient.Peers, us ...tether.PeerUpdate) {
	ps.Apply(&tether.CoordinateResponse{Peers: us})
}

// awaitable reports whether Await returns id's node at once.
func awaitable(ps *coordclient.Peers, id uuid.UUID) bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ps.Await(ctx, id)
	return err == nil
}

// TestPeersRules drives the applier directly, without a coordinator: what
// each kind of update does to the tunnel.
func TestPeersRules(t *testing.T) {
	ctx := testContext(t)
	tun := newFakeTunnel()
	const lostTimeout = 50 * time.Millisecond
	ps := coordclient.NewPeers(coordclient.PeersOptions{Tunnel: tun, LostPeerTimeout: lostTimeout})
	defer ps.Close()
	a, b, stranger := uuid.New(), uuid.New(), uuid.New()

	dm := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{7: {RegionID: 7}}}
	ps.Apply(&tether.CoordinateResponse{DERPMap: dm})
	if tun.derpMap != dm {
		t.Error("the DERP map did not reach the tunnel")
	}

	apply(ps, nodeUpdate(a, 1), nodeUpdate(b, 1))
	if !hasNode(tun, a, 1)() || !hasNode(tun, b, 1)() || !awaitable(ps, a) {
		t.Fatal("introduced peers are not in the tunnel")
	}

	// News about a peer never introduced changes nothing.
	apply(ps, peerUpdate(stranger, tether.PeerLost), peerUpdate(stranger, tether.PeerDisconnected),
		tether.PeerUpdate{ID: a, Kind: "from the future"})
	if tun.isLost(stranger, true)() || slices.Contains(tun.removals(), stranger) || !hasNode(tun, a, 1)() {
		t.Fatal("an update about an unknown peer, or of an unknown kind, reached the tunnel")
	}

	// Lost: kept, and the tunnel told; Await waits for a reintroduction.
	apply(ps, peerUpdate(a, tether.PeerLost))
	if tun.peer(a) == nil || !tun.isLost(a, true)() {
		t.Fatal("a lost peer was removed, or the tunnel was not told it is lost")
	}
	if awaitable(ps, a) {
		t.Error("Await returned a lost peer")
	}
	// Reintroduced in time: no longer lost, and its removal is off. b,
	// lost later, expires later than a would have.
	apply(ps, nodeUpdate(a, 2))
	if !hasNode(tun, a, 2)() || tun.isLost(a, true)() || !awaitable(ps, a) {
		t.Fatal("a reintroduced peer is still lost")
	}
	apply(ps, peerUpdate(b, tether.PeerLost))
	waitUntil(t, ctx, "the lost peer expires", func() bool { return tun.peer(b) == nil })
	if tun.peer(a) == nil {
		t.Fatal("the reintroduced peer expired")
	}

	// Disconnected: removed at once.
	apply(ps, peerUpdate(a, tether.PeerDisconnected))
	if tun.peer(a) != nil || awaitable(ps, a) {
		t.Error("a disconnected peer stayed")
	}
}

// TestPeersSessions checks what a reconnecting client's applier does
// between sessions, and that Close leaves the tunnel alone.
func TestPeersSessions(t *testing.T) {
	ctx := testContext(t)
	tun := newFakeTunnel()
	ps := coordclient.NewPeers(coordclient.PeersOptions{Tunnel: tun, LostPeerTimeout: testTimeout})
	a, b := uuid.New(), uuid.New()

	ps.SessionStarted()
	apply(ps, nodeUpdate(a, 1), nodeUpdate(b, 1))
	if tun.isLost(a, true)() {
		t.Fatal("the first session made a peer lost")
	}
	apply(ps, peerUpdate(a, tether.PeerLost))

	// The session breaks: nothing is known to be lost any more.
	ps.SessionEnded()
	if tun.isLost(a, true)() {
		t.Error("a peer is still lost while the coordination is down")
	}
	// The next one starts: everyone is lost until reintroduced.
	ps.SessionStarted()
	if !tun.isLost(a, true)() || !tun.isLost(b, true)() {
		t.Fatal("peers not yet reintroduced after a reconnect are not lost")
	}
	apply(ps, nodeUpdate(b, 2))
	if tun.isLost(b, true)() {
		t.Error("a reintroduced peer is still lost")
	}
	if _, err := ps.Await(ctx, b); err != nil {
		t.Fatal(err)
	}

	// Close: the peers stay, nothing is lost, and nothing changes after.
	ps.Close()
	if tun.isLost(a, true)() || tun.peer(a) == nil || tun.peer(b) == nil {
		t.Error("Close removed a peer or left it lost")
	}
	apply(ps, peerUpdate(b, tether.PeerDisconnected), nodeUpdate(uuid.New(), 1))
	if tun.peer(b) == nil || tun.upsertCount() != 3 {
		t.Error("Apply changed the tunnel after Close")
	}
}

// TestInvalidNodesDropped checks the client's edge: nodes from the
// coordinator that are not valid for their peer never reach the tunnel,
// while the valid updates of the same message do, and the connection
// stays up.
func TestInvalidNodesDropped(t *testing.T) {
	ctx := testContext(t)
	good, other, noNode, noDisco, wideAddr := uuid.New(), uuid.New(), uuid.New(), uuid.New(), uuid.New()
	stolen := newNode(other, 1)
	stolen.Addresses = []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(good), 128)}
	bare := newNode(noDisco, 1)
	bare.DiscoKey = key.DiscoPublic{}
	wide := newNode(wideAddr, 1)
	wide.Addresses = []netip.Prefix{tether.TunnelPrefix}
	resp := tether.CoordinateResponse{Peers: []tether.PeerUpdate{
		{ID: other, Kind: tether.PeerNode, Node: stolen},
		{ID: noNode, Kind: tether.PeerNode},
		{ID: noDisco, Kind: tether.PeerNode, Node: bare},
		{ID: wideAddr, Kind: tether.PeerNode, Node: wide},
		nodeUpdate(good, 1),
	}}
	msg, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	url := misbehavingServer(t, func(ctx context.Context, conn *websocket.Conn) {
		conn.Write(ctx, websocket.MessageText, msg)
		readClose(ctx, conn)
	})
	tun := newFakeTunnel()
	dials := 0
	c := coordclient.New(coordclient.Options{
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			dials++
			conn, _, err := websocket.Dial(ctx, url, nil)
			return conn, err
		},
		Tunnel:            tun,
		HeartbeatInterval: -1,
	})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	if _, err := c.AwaitPeer(ctx, good); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, id := range []uuid.UUID{other, noNode, noDisco, wideAddr} {
		if tun.peer(id) != nil {
			t.Errorf("an invalid node for %v reached the tunnel", id)
		}
	}
	if tun.upsertCount() != 1 || dials != 1 {
		t.Errorf("%d upserts and %d dials, want 1 and 1", tun.upsertCount(), dials)
	}
}

// TestPeersRelays checks that a UDP relay reaches the tunnel as a relay,
// never as a peer, and leaves it as soon as it is lost.
func TestPeersRelays(t *testing.T) {
	tun := newFakeTunnel()
	ps := coordclient.NewPeers(coordclient.PeersOptions{Tunnel: tun})
	defer ps.Close()
	relay, peer := uuid.New(), uuid.New()
	relayUpdate := nodeUpdate(relay, 1)
	relayUpdate.Relay = true

	apply(ps, relayUpdate, nodeUpdate(peer, 1))
	tun.mu.Lock()
	_, isRelay := tun.relays[relay]
	_, isPeer := tun.peers[relay]
	tun.mu.Unlock()
	if !isRelay || isPeer {
		t.Fatalf("relay: in the tunnel's relays %v, in its peers %v; want only relays", isRelay, isPeer)
	}

	// The same ID may not turn into a peer, nor a peer into a relay.
	asPeer := nodeUpdate(relay, 2)
	peerAsRelay := nodeUpdate(peer, 2)
	peerAsRelay.Relay = true
	apply(ps, asPeer, peerAsRelay)
	tun.mu.Lock()
	_, isPeer = tun.peers[relay]
	_, peerIsRelay := tun.relays[peer]
	tun.mu.Unlock()
	if isPeer || peerIsRelay {
		t.Fatalf("a kind change took effect: relay is a peer %v, peer is a relay %v", isPeer, peerIsRelay)
	}

	apply(ps, peerUpdate(relay, tether.PeerLost))
	if got := tun.removals(); !slices.Contains(got, relay) {
		t.Fatalf("removals after the relay was lost = %v; want it removed at once", got)
	}
}
