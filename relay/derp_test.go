package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether/relay"
)

// testTimeout bounds every wait.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fakeKeys is a coordinator's set of known keys, changed by the test.
type fakeKeys struct {
	waiting chan struct{} // gets a signal (if it has room) when a caller starts waiting

	mu      sync.Mutex
	known   map[key.NodePublic]bool
	changed chan struct{} // closed and replaced on every change
}

func newFakeKeys(known ...key.NodePublic) *fakeKeys {
	f := &fakeKeys{known: make(map[key.NodePublic]bool), changed: make(chan struct{}), waiting: make(chan struct{}, 1)}
	for _, k := range known {
		f.known[k] = true
	}
	return f
}

func (f *fakeKeys) set(k key.NodePublic, known bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[k] = known
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeKeys) KnowsNodeKey(k key.NodePublic) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.known[k]
}

func (f *fakeKeys) AwaitNodeKey(ctx context.Context, k key.NodePublic) bool {
	for {
		f.mu.Lock()
		known, changed := f.known[k], f.changed
		f.mu.Unlock()
		if known {
			return true
		}
		select {
		case f.waiting <- struct{}{}:
		default:
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// testRelay is a built-in relay as the server runs it: its handler
// behind an HTTP server.
type testRelay struct {
	*httptest.Server
	derp *relay.DERP
}

func startRelay(t *testing.T, opts relay.Options) *testRelay {
	t.Helper()
	d, err := relay.NewDERP(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() {
		d.Close()
		srv.CloseClientConnections()
		srv.Close()
		// net/http's default client keeps connections to the admission
		// controller, which the relay used.
		http.DefaultClient.CloseIdleConnections()
	})
	return &testRelay{Server: srv, derp: d}
}

// client is one DERP client of the relay, over DERP's own upgrade or over
// WebSocket.
type client struct {
	priv key.NodePrivate
	recv func() (derp.ReceivedMessage, error)
	send func(dst key.NodePublic, b []byte) error
	stop func()
}

func dialDERP(t *testing.T, ctx context.Context, r *testRelay, priv key.NodePrivate, meshKey key.DERPMesh) *client {
	t.Helper()
	c, err := derphttp.NewClient(priv, r.URL+"/derp", func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	c.MeshKey = meshKey
	t.Cleanup(func() { c.Close() })
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	return &client{priv: priv, recv: c.Recv, send: c.Send, stop: func() { c.Close() }}
}

func dialWebSocket(t *testing.T, ctx context.Context, r *testRelay, priv key.NodePrivate, meshKey key.DERPMesh) *client {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.URL, "http")+"/derp", &websocket.DialOptions{Subprotocols: []string{"derp"}})
	if err != nil {
		t.Fatalf("dial WebSocket: %v", err)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	var opts []derp.ClientOpt
	if !meshKey.IsZero() {
		opts = append(opts, derp.MeshKey(meshKey))
	}
	c, err := derp.NewClient(priv, nc, bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc)), func(string, ...any) {}, opts...)
	if err != nil {
		t.Fatalf("DERP handshake over WebSocket: %v", err)
	}
	return &client{priv: priv, recv: c.Recv, send: c.Send, stop: func() { nc.Close() }}
}

type dialer func(t *testing.T, ctx context.Context, r *testRelay, priv key.NodePrivate, meshKey key.DERPMesh) *client

var transports = []struct {
	name string
	dial dialer
}{
	{"DERP upgrade", dialDERP},
	{"WebSocket", dialWebSocket},
}

// admitted reads the relay's first message: its server info for an
// admitted client, the end of the connection for a refused one.
func admitted(t *testing.T, c *client) bool {
	t.Helper()
	for {
		m, err := c.recv()
		if err != nil {
			return false
		}
		if _, ok := m.(derp.ServerInfoMessage); ok {
			return true
		}
	}
}

// relays reports whether a packet from a reaches b; both must have been
// admitted. The packet is repeated, since the relay may not have
// registered b yet, and b's stream is read until the packet or its end.
func relays(t *testing.T, ctx context.Context, a, b *client) bool {
	t.Helper()
	got := make(chan bool, 1)
	go func() {
		for {
			m, err := b.recv()
			if err != nil {
				got <- false
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok && p.Source == a.priv.Public() && string(p.Data) == "hello" {
				got <- true
				return
			}
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		a.send(b.priv.Public(), []byte("hello"))
		select {
		case ok := <-got:
			return ok
		case <-tick.C:
		case <-ctx.Done():
			b.stop()
			<-got
			return false
		}
	}
}

// TestRelayAdmitsOnlyKnownPeers: clients whose keys the coordinator knows
// relay through the built-in relay, over either transport; clients with
// keys it does not know are refused, as are clients with a wrong mesh
// key; clients with the mesh key are trusted whatever their key.
func TestRelayAdmitsOnlyKnownPeers(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := testContext(t)
			known1, known2 := key.NewNode(), key.NewNode()
			keys := newFakeKeys(known1.Public(), known2.Public())
			r := startRelay(t, relay.Options{Keys: keys, AdmitWait: 100 * time.Millisecond})

			a, b := tr.dial(t, ctx, r, known1, key.DERPMesh{}), tr.dial(t, ctx, r, known2, key.DERPMesh{})
			if !admitted(t, a) || !admitted(t, b) {
				t.Fatal("a client with a known key was refused")
			}
			if !relays(t, ctx, a, b) {
				t.Fatal("no packet between two known peers")
			}

			for _, c := range []*client{
				tr.dial(t, ctx, r, key.NewNode(), key.DERPMesh{}),
				tr.dial(t, ctx, r, key.NewNode(), wrongMeshKey(t)),
			} {
				if admitted(t, c) {
					t.Error("a client with an unknown key (and no or a wrong mesh key) was admitted")
				}
			}

			mesh1 := tr.dial(t, ctx, r, key.NewNode(), r.derp.MeshKey())
			mesh2 := tr.dial(t, ctx, r, key.NewNode(), r.derp.MeshKey())
			if !admitted(t, mesh1) || !admitted(t, mesh2) {
				t.Fatal("a client with the mesh key was refused")
			}
			if !relays(t, ctx, mesh1, mesh2) {
				t.Fatal("no packet between two mesh clients")
			}
		})
	}
}

func wrongMeshKey(t *testing.T) key.DERPMesh {
	k, err := key.ParseDERPMesh(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestAdmissionWaitsForTheKey: a client that reaches the relay before its
// node reaches the coordinator is admitted as soon as the key is known,
// and the packets it sent meanwhile are delivered.
func TestAdmissionWaitsForTheKey(t *testing.T) {
	ctx := testContext(t)
	early, peer := key.NewNode(), key.NewNode()
	keys := newFakeKeys(peer.Public())
	r := startRelay(t, relay.Options{Keys: keys, AdmitWait: testTimeout})

	b := dialDERP(t, ctx, r, peer, key.DERPMesh{})
	if !admitted(t, b) {
		t.Fatal("known peer refused")
	}
	a := dialDERP(t, ctx, r, early, key.DERPMesh{})
	// Sent while the relay is still deciding about a.
	if err := a.send(peer.Public(), []byte("sent before admission")); err != nil {
		t.Fatal(err)
	}
	keys.set(early.Public(), true)
	if !admitted(t, a) {
		t.Fatal("the client was refused although its key became known while it waited")
	}
	for {
		m, err := b.recv()
		if err != nil {
			t.Fatalf("the packet sent before admission never came: %v", err)
		}
		if p, ok := m.(derp.ReceivedPacket); ok {
			if string(p.Data) != "sent before admission" || p.Source != early.Public() {
				t.Fatalf("got %q from %s", p.Data, p.Source.ShortString())
			}
			break
		}
	}
}

// TestAdmissionRule asks the admission controller directly, as the relay
// does, and checks its answer in each case.
func TestAdmissionRule(t *testing.T) {
	known := key.NewNode().Public()
	later := key.NewNode().Public()
	tests := []struct {
		name     string
		method   string
		path     string // appended to the admission URL
		body     string
		becomes  key.NodePublic // made known while the request waits
		status   int
		allow    bool
		wantWait bool // the answer comes only after AdmitWait
	}{
		{name: "known key", body: admitBody(known), status: 200, allow: true},
		{name: "unknown key", body: admitBody(key.NewNode().Public()), status: 200, wantWait: true},
		{name: "key known while waiting", body: admitBody(later), becomes: later, status: 200, allow: true},
		{name: "zero key", body: `{"NodePublic":"nodekey:` + strings.Repeat("0", 64) + `"}`, status: 400},
		{name: "malformed body", body: `{"NodePublic":`, status: 400},
		{name: "GET", method: "GET", status: 405},
		{name: "another path", path: "x", body: admitBody(known), status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			const wait = 150 * time.Millisecond
			keys := newFakeKeys(known)
			r := startRelay(t, relay.Options{Keys: keys, AdmitWait: wait})
			method := tt.method
			if method == "" {
				method = "POST"
			}
			req, err := http.NewRequestWithContext(ctx, method, r.derp.AdmitURL()+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.becomes.IsZero() {
				go func() {
					select {
					case <-keys.waiting:
						keys.set(tt.becomes, true)
					case <-ctx.Done():
					}
				}()
			}
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != 200 {
				return
			}
			var got tailcfg.DERPAdmitClientResponse
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.Allow != tt.allow {
				t.Errorf("Allow = %v, want %v", got.Allow, tt.allow)
			}
			if tt.wantWait && time.Since(start) < wait {
				t.Errorf("refused after %v, before AdmitWait (%v)", time.Since(start), wait)
			}
		})
	}
}

func admitBody(k key.NodePublic) string {
	b, _ := json.Marshal(tailcfg.DERPAdmitClientRequest{NodePublic: k, Source: netip.MustParseAddr("192.0.2.1")})
	return string(b)
}

// TestWardenClosesForgottenKeys: once the coordinator has forgotten a
// connected client's key for the grace period, the guard closes its
// connection, and its reconnection is refused; clients it still knows
// keep relaying.
func TestWardenClosesForgottenKeys(t *testing.T) {
	ctx := testContext(t)
	gone, stays := key.NewNode(), key.NewNode()
	keys := newFakeKeys(gone.Public(), stays.Public())
	r := startRelay(t, relay.Options{Keys: keys, AdmitWait: 50 * time.Millisecond, Grace: 100 * time.Millisecond})
	a := dialDERP(t, ctx, r, gone, key.DERPMesh{})
	b := dialDERP(t, ctx, r, stays, key.DERPMesh{})
	if !admitted(t, a) || !admitted(t, b) {
		t.Fatal("known peers refused")
	}
	if !relays(t, ctx, a, b) {
		t.Fatal("no packet between known peers")
	}

	keys.set(gone.Public(), false)
	for {
		if _, err := a.recv(); err != nil {
			break // closed by the relay
		}
	}
	again := dialDERP(t, ctx, r, gone, key.DERPMesh{})
	if admitted(t, again) {
		t.Error("the forgotten key was admitted again")
	}
	c := dialDERP(t, ctx, r, key.NewNode(), r.derp.MeshKey())
	if !admitted(t, c) || !relays(t, ctx, c, b) {
		t.Error("the client whose key is still known no longer relays")
	}
}

// TestNewDERP checks the options: Keys is required, a mesh key given is
// the one the relay trusts, and a relay without one gets a random one of
// its own.
func TestNewDERP(t *testing.T) {
	meshKey := strings.Repeat("5a", 32)
	tests := []struct {
		name    string
		opts    relay.Options
		wantErr string
		wantKey string // "": a random key
	}{
		{name: "no Keys", opts: relay.Options{MeshKey: meshKey}, wantErr: "Keys is required"},
		{name: "malformed mesh key", opts: relay.Options{Keys: newFakeKeys(), MeshKey: "5a5a"}, wantErr: "relay mesh key"},
		{name: "mesh key given", opts: relay.Options{Keys: newFakeKeys(), MeshKey: meshKey}, wantKey: meshKey},
		{name: "random mesh key", opts: relay.Options{Keys: newFakeKeys()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := relay.NewDERP(tt.opts)
			if tt.wantErr != "" {
				if err == nil {
					d.Close()
					t.Fatalf("no error, want one with %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got := d.MeshKey()
			if got.IsZero() {
				t.Fatal("zero mesh key")
			}
			if tt.wantKey != "" {
				if want, _ := key.ParseDERPMesh(tt.wantKey); !got.Equal(want) {
					t.Errorf("mesh key %s, want the one given", got.String()[:8])
				}
				return
			}
			other, err := relay.NewDERP(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if got.Equal(other.MeshKey()) {
				t.Error("two relays without a mesh key got the same one")
			}
		})
	}
}

// TestMeshKeyAdmits: the deployment's mesh key admits a client that Keys
// does not know, whatever its node key; another key does not.
func TestMeshKeyAdmits(t *testing.T) {
	ctx := testContext(t)
	meshKey := strings.Repeat("5a", 32)
	r := startRelay(t, relay.Options{Keys: newFakeKeys(), MeshKey: meshKey, AdmitWait: 50 * time.Millisecond})
	k, err := key.ParseDERPMesh(meshKey)
	if err != nil {
		t.Fatal(err)
	}
	if !admitted(t, dialDERP(t, ctx, r, key.NewNode(), k)) {
		t.Error("a client with the deployment's mesh key was refused")
	}
	if admitted(t, dialDERP(t, ctx, r, key.NewNode(), wrongMeshKey(t))) {
		t.Error("a client with another mesh key was admitted")
	}
}

// TestQueueDepth: the relay queues a burst of packets for a client that
// does not read for a moment (the library's default of 32 drops most of
// it), unless the operator chose another depth in the environment.
func TestQueueDepth(t *testing.T) {
	const burst = 200
	tests := []struct {
		name    string
		env     string // "" leaves the knob unset
		wantAll bool
		wantMax int // with !wantAll: at most this many arrive
	}{
		{name: "default", wantAll: true},
		// 16 queued, ~4 in the relay's write buffer, one being written.
		{name: "operator's depth", env: "16", wantMax: 32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(relay.QueueDepthKnob, tt.env)
			if tt.env == "" {
				os.Unsetenv(relay.QueueDepthKnob) // t.Setenv restores it
			}
			ctx := testContext(t)
			sender, watcher := key.NewNode(), key.NewNode()
			r := startRelay(t, relay.Options{Keys: newFakeKeys(sender.Public(), watcher.Public())})
			if tt.env == "" && os.Getenv(relay.QueueDepthKnob) != fmt.Sprint(relay.QueueDepth) {
				t.Errorf("%s=%q after NewDERP, want %d", relay.QueueDepthKnob, os.Getenv(relay.QueueDepthKnob), relay.QueueDepth)
			}

			// The stalled client reads through a pipe, which holds nothing:
			// what it does not read waits in the relay's queue. It uses the
			// mesh key, whose clients the relay waits 30 s for rather than 2.
			stalledKey := key.NewNode()
			stalled := dialPipe(t, ctx, r, stalledKey, r.derp.MeshKey())
			a, w := dialDERP(t, ctx, r, sender, key.DERPMesh{}), dialDERP(t, ctx, r, watcher, key.DERPMesh{})
			if !admitted(t, stalled) || !admitted(t, a) || !admitted(t, w) {
				t.Fatal("a client was refused")
			}
			payload := make([]byte, 1000)
			for i := range burst {
				payload[0], payload[1] = byte(i>>8), byte(i)
				if err := a.send(stalledKey.Public(), payload); err != nil {
					t.Fatal(err)
				}
			}
			// The relay handles a client's packets in order: once the
			// watcher has the marker, the burst is queued (or dropped).
			if !relays(t, ctx, a, w) {
				t.Fatal("the marker never came")
			}
			if err := a.send(stalledKey.Public(), []byte("end")); err != nil {
				t.Fatal(err)
			}
			got := 0
			for {
				m, err := stalled.recv()
				if err != nil {
					t.Fatalf("after %d packets: %v", got, err)
				}
				p, ok := m.(derp.ReceivedPacket)
				if !ok {
					continue
				}
				if string(p.Data) == "end" {
					break
				}
				got++
			}
			switch {
			case tt.wantAll && got != burst:
				t.Errorf("%d of %d packets arrived; the relay's queue dropped the rest", got, burst)
			case !tt.wantAll && got > tt.wantMax:
				t.Errorf("%d of %d packets arrived, want at most %d: the operator's queue depth was not used", got, burst, tt.wantMax)
			}
		})
	}
}

// dialPipe connects a client to the relay over an in-memory pipe, which
// buffers nothing.
func dialPipe(t *testing.T, ctx context.Context, r *testRelay, priv key.NodePrivate, meshKey key.DERPMesh) *client {
	t.Helper()
	ours, theirs := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.derp.ServeConn(ctx, theirs)
	}()
	t.Cleanup(func() {
		ours.Close()
		<-done
	})
	var opts []derp.ClientOpt
	if !meshKey.IsZero() {
		opts = append(opts, derp.MeshKey(meshKey))
	}
	c, err := derp.NewClient(priv, ours, bufio.NewReadWriter(bufio.NewReader(ours), bufio.NewWriter(ours)), func(string, ...any) {}, opts...)
	if err != nil {
		t.Fatalf("DERP handshake over a pipe: %v", err)
	}
	return &client{priv: priv, recv: c.Recv, send: c.Send, stop: func() { ours.Close() }}
}

// TestCloseLeavesNothing: Close ends the relay's clients, an admission in
// progress, the warden and the mesh links, and leaves no goroutine behind.
func TestCloseLeavesNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	ctx := testContext(t)
	known := key.NewNode()
	keys := newFakeKeys(known.Public())
	d, err := relay.NewDERP(relay.Options{Keys: keys, AdmitWait: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	r := &testRelay{Server: srv, derp: d}
	od, err := relay.NewDERP(relay.Options{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	other := httptest.NewServer(od.Handler())
	d.SetMeshPeers([]relay.MeshPeer{{ID: "other", URL: other.URL}})

	c := dialDERP(t, ctx, r, known, key.DERPMesh{})
	if !admitted(t, c) {
		t.Fatal("known peer refused")
	}
	waiting := dialDERP(t, ctx, r, key.NewNode(), key.DERPMesh{})
	select {
	case <-keys.waiting:
	case <-ctx.Done():
		t.Fatal("the unknown client's admission never started")
	}

	d.Close()
	if admitted(t, waiting) {
		t.Error("the client waiting for admission was admitted by a closed relay")
	}
	for {
		if _, err := c.recv(); err != nil {
			break
		}
	}
	d.SetMeshPeers([]relay.MeshPeer{{ID: "other", URL: other.URL}}) // does nothing
	d.Close()                                                       // again: does nothing
	if links := d.MeshLinks(); len(links) != 0 {
		t.Errorf("mesh links after Close: %v", links)
	}

	c.stop()
	waiting.stop()
	srv.CloseClientConnections()
	srv.Close()
	od.Close()
	other.CloseClientConnections()
	other.Close()
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
