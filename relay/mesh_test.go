package relay_test

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/tetherdev/tether/relay"
)

const testMeshKey = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"

// TestMeshRelaysBetweenRelays: two relays with the deployment's mesh key,
// each told of the other, carry packets between a client of one and a
// client of the other, both ways.
func TestMeshRelaysBetweenRelays(t *testing.T) {
	ctx := testContext(t)
	x, y := key.NewNode(), key.NewNode()
	keys := newFakeKeys(x.Public(), y.Public())
	a := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey})
	b := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey})
	a.derp.SetMeshPeers([]relay.MeshPeer{{ID: "b", URL: b.URL}, {ID: "unreachable: no URL"}})
	b.derp.SetMeshPeers([]relay.MeshPeer{{ID: "a", URL: a.URL + "/"}})
	if got, want := a.derp.MeshLinks(), []string{"b " + b.URL}; !slices.Equal(got, want) {
		t.Errorf("mesh links %q, want %q", got, want)
	}

	cx, cy := dialDERP(t, ctx, a, x, key.DERPMesh{}), dialDERP(t, ctx, b, y, key.DERPMesh{})
	if !admitted(t, cx) || !admitted(t, cy) {
		t.Fatal("known peer refused")
	}
	if !relays(t, ctx, cx, cy) {
		t.Error("no packet from a client of one relay to a client of the other")
	}
	if !relays(t, ctx, cy, cx) {
		t.Error("no packet back")
	}
}

// TestMeshFollowsPeers: a relay whose URL changed under the same ID is
// linked anew, and relays no longer listed are dropped.
func TestMeshFollowsPeers(t *testing.T) {
	ctx := testContext(t)
	x, z := key.NewNode(), key.NewNode()
	keys := newFakeKeys(x.Public(), z.Public())
	a := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey})
	b := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey})
	c := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey})

	a.derp.SetMeshPeers([]relay.MeshPeer{{ID: "peer", URL: b.URL}})
	a.derp.SetMeshPeers([]relay.MeshPeer{{ID: "peer", URL: c.URL}}) // it moved
	if got, want := a.derp.MeshLinks(), []string{"peer " + c.URL}; !slices.Equal(got, want) {
		t.Fatalf("mesh links %q, want %q", got, want)
	}
	cx, cz := dialDERP(t, ctx, a, x, key.DERPMesh{}), dialDERP(t, ctx, c, z, key.DERPMesh{})
	if !admitted(t, cx) || !admitted(t, cz) {
		t.Fatal("known peer refused")
	}
	if !relays(t, ctx, cx, cz) {
		t.Error("no packet to a client of the relay's new URL")
	}

	a.derp.SetMeshPeers(nil)
	if got := a.derp.MeshLinks(); len(got) != 0 {
		t.Errorf("mesh links %q after the peer left", got)
	}
}

// TestMeshNeedsTheKey: a relay with another mesh key refuses the link
// (the relays belong to different deployments), and the relay that tried
// says so in its log and keeps trying.
func TestMeshNeedsTheKey(t *testing.T) {
	logs := newLogWatch()
	keys := newFakeKeys()
	a := startRelay(t, relay.Options{Keys: keys, MeshKey: testMeshKey,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	b := startRelay(t, relay.Options{Keys: keys, AdmitWait: 50 * time.Millisecond}) // a random key
	a.derp.SetMeshPeers([]relay.MeshPeer{{ID: "b", URL: b.URL}})
	logs.waitFor(t, "mesh link failed; retrying")
}

// logWatch is a log destination that tests wait on.
type logWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logWatch) waitFor(t *testing.T, s string) {
	t.Helper()
	ctx := testContext(t)
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.buf.String(), s), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no %q in the log:\n%s", s, l.buf.String())
		}
	}
}
