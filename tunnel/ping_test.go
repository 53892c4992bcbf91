package tunnel

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// TestEarlyHandshakeDropped: AwaitReachable starts the WireGuard handshake
// before the peer has answered a ping; one that the peer never gets (here
// the relay drops it: the peer is not connected yet, as when it has not
// learned of us) must not cost wireguard-go's 5 s wait for a retry: once
// the peer answers a ping, a fresh handshake starts at once.
func TestEarlyHandshakeDropped(t *testing.T) {
	dm, relay := newDERPServer(t, derpOptions{})
	var (
		mu     sync.Mutex
		events []string
	)
	a := newConn(t, "a", Options{DERPMap: dm, BlockEndpoints: true, Timeline: func(event string, _ ...any) {
		mu.Lock()
		events = append(events, event)
		mu.Unlock()
	}})
	// b starts without relays, so it is not on the relay yet; a knows its
	// node, with the relay as its home.
	b := newConn(t, "b", Options{DERPMap: &tailcfg.DERPMap{}, BlockEndpoints: true})
	introduced := make(chan struct{})
	var once sync.Once
	b.SetNodeCallback(func(n *tether.Node) {
		m := *n
		m.PreferredDERP = 1
		if err := a.UpsertPeer(b.ID(), &m); err != nil {
			t.Errorf("upsert b into a: %v", err)
		}
		once.Do(func() { close(introduced) })
	})
	reached := make(chan error, 1)
	go func() { reached <- a.AwaitReachable(testContext(t), b.Addr()) }()
	<-introduced

	// Once the relay has dropped a's handshake, b joins it and learns
	// of a.
	for relayedWireGuard(t, relay) == 0 {
		select {
		case err := <-reached:
			t.Fatalf("AwaitReachable returned %v before b could answer", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	introduce(t, a, b)
	b.SetDERPMap(dm)

	if err := <-reached; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	start := slices.Index(events, "handshake-start")
	restart := slices.Index(events, "handshake-restart")
	up := slices.Index(events, "session-up")
	if start < 0 || restart < start || up < restart {
		t.Errorf("events %q: want the early handshake, a fresh one, then the session", events)
	}
}

// relayedWireGuard is how many WireGuard packets (not disco) the relay
// has received.
func relayedWireGuard(t *testing.T, d *derpserver.Server) int {
	t.Helper()
	var v struct {
		Kinds map[string]int `json:"counter_packets_received_kind"`
	}
	if err := json.Unmarshal([]byte(d.ExpVar(false).String()), &v); err != nil {
		t.Fatalf("relay metrics: %v", err)
	}
	return v.Kinds["other"]
}
