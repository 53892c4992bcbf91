package relayguard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether/relayguard"
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

// relay is a built-in relay as the server runs it: derpserver behind its
// HTTP handler with WebSocket support, guarded.
type relay struct {
	*httptest.Server
	derp  *derpserver.Server
	guard *relayguard.Guard
}

func startRelay(t *testing.T, opts relayguard.Options) *relay {
	t.Helper()
	d := derpserver.New(key.NewNode(), func(string, ...any) {})
	g, err := relayguard.New(d, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(derpserver.AddWebSocketSupport(d, derpserver.Handler(d)))
	t.Cleanup(func() {
		g.Close()
		srv.CloseClientConnections()
		srv.Close()
		d.Close()
		// net/http's default client keeps connections to the admission
		// controller, which the relay used.
		http.DefaultClient.CloseIdleConnections()
	})
	return &relay{Server: srv, derp: d, guard: g}
}

// client is one DERP client of the relay, over DERP's own upgrade or over
// WebSocket.
type client struct {
	priv key.NodePrivate
	recv func() (derp.ReceivedMessage, error)
	send func(dst key.NodePublic, b []byte) error
	stop func()
}

func dialDERP(t *testing.T, ctx context.Context, r *relay, priv key.NodePrivate, meshKey key.DERPMesh) *client {
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

func dialWebSocket(t *testing.T, ctx context.Context, r *relay, priv key.NodePrivate, meshKey key.DERPMesh) *client {
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

type dialer func(t *testing.T, ctx context.Context, r *relay, priv key.NodePrivate, meshKey key.DERPMesh) *client

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
			r := startRelay(t, relayguard.Options{AdmitWait: 100 * time.Millisecond})
			known1, known2 := key.NewNode(), key.NewNode()
			keys := newFakeKeys(known1.Public(), known2.Public())
			r.guard.Attach(keys)

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
	r := startRelay(t, relayguard.Options{AdmitWait: testTimeout})
	early, peer := key.NewNode(), key.NewNode()
	keys := newFakeKeys(peer.Public())
	r.guard.Attach(keys)

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
		attach   bool
		method   string
		path     string // appended to the admission URL
		body     string
		becomes  key.NodePublic // made known while the request waits
		status   int
		allow    bool
		wantWait bool // the answer comes only after AdmitWait
	}{
		{name: "known key", attach: true, body: admitBody(known), status: 200, allow: true},
		{name: "unknown key", attach: true, body: admitBody(key.NewNode().Public()), status: 200, wantWait: true},
		{name: "key known while waiting", attach: true, body: admitBody(later), becomes: later, status: 200, allow: true},
		{name: "before the coordinator is attached", body: admitBody(known), status: 200},
		{name: "zero key", attach: true, body: `{"NodePublic":"nodekey:` + strings.Repeat("0", 64) + `"}`, status: 400},
		{name: "malformed body", attach: true, body: `{"NodePublic":`, status: 400},
		{name: "GET", attach: true, method: "GET", status: 405},
		{name: "another path", attach: true, path: "x", body: admitBody(known), status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			const wait = 150 * time.Millisecond
			r := startRelay(t, relayguard.Options{AdmitWait: wait})
			keys := newFakeKeys(known)
			if tt.attach {
				r.guard.Attach(keys)
			}
			method := tt.method
			if method == "" {
				method = "POST"
			}
			req, err := http.NewRequestWithContext(ctx, method, r.guard.AdmitURL()+tt.path, strings.NewReader(tt.body))
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
	r := startRelay(t, relayguard.Options{AdmitWait: 50 * time.Millisecond, Grace: 100 * time.Millisecond})
	gone, stays := key.NewNode(), key.NewNode()
	keys := newFakeKeys(gone.Public(), stays.Public())
	r.guard.Attach(keys)
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

// TestCloseRefuses: a closed guard admits no one.
func TestCloseRefuses(t *testing.T) {
	ctx := testContext(t)
	r := startRelay(t, relayguard.Options{})
	k := key.NewNode()
	r.guard.Attach(newFakeKeys(k.Public()))
	r.guard.Close()
	if admitted(t, dialDERP(t, ctx, r, k, key.DERPMesh{})) {
		t.Error("admitted after Close")
	}
}
