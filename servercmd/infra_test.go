package servercmd

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/pgtest"
)

// testInfra is an infra whose relay is served on httptest.
type testInfra struct {
	*infra
	relayURL string
}

// startTestInfra starts the infra that s asks for, with its relay at a
// local URL (also where other replicas reach it).
func startTestInfra(t *testing.T, s Settings) *testInfra {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	relayURL := "http://" + hs.Listener.Addr().String()
	access, _ := url.Parse(relayURL)
	n, err := startInfra(testContext(t), s, udpRelaySettings{disabled: true}, access, relayURL, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		hs.Close()
		t.Fatal(err)
	}
	if n.derp != nil {
		hs.Config.Handler = n.derp.Handler()
	}
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		n.close()
		// The relay asks its admission controller with net/http's
		// default client, which keeps the connections.
		http.DefaultClient.CloseIdleConnections()
	})
	return &testInfra{infra: n, relayURL: relayURL}
}

// serve connects a peer to the coordinator with a node of key k: an agent
// when agent is nil, else a client of that agent. It stays connected
// until the test ends.
func serve(t *testing.T, co *coordinator.Coordinator, id uuid.UUID, agent *uuid.UUID, k key.NodePublic) {
	t.Helper()
	node := &tether.Node{
		Key:       k,
		DiscoKey:  key.NewDisco().Public(),
		Addresses: []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
		AsOf:      time.Now().UTC(),
	}
	st := &oneNodeStream{node: node, sent: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		if agent == nil {
			done <- co.ServeAgent(ctx, id, st)
		} else {
			done <- co.ServeClient(ctx, id, *agent, st)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// oneNodeStream is a peer that sends its node and then nothing.
type oneNodeStream struct {
	node *tether.Node
	sent chan struct{} // closed once the node went
}

func (s *oneNodeStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	select {
	case <-s.sent:
		<-ctx.Done()
		return nil, ctx.Err()
	default:
		close(s.sent)
		return &tether.CoordinateRequest{Node: s.node}, nil
	}
}

func (s *oneNodeStream) Send(context.Context, *tether.CoordinateResponse) error { return nil }

// relayClient is a DERP client of a relay.
type relayClient struct {
	priv key.NodePrivate
	c    *derphttp.Client
}

func dialRelay(t *testing.T, relayURL string, priv key.NodePrivate) *relayClient {
	t.Helper()
	c, err := derphttp.NewClient(priv, relayURL+"/derp", func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Connect(testContext(t)); err != nil {
		t.Fatalf("connect to the relay: %v", err)
	}
	return &relayClient{priv: priv, c: c}
}

// admitted reads the relay's first message: its server info for an
// admitted client, the end of the connection for a refused one.
func (rc *relayClient) admitted() bool {
	for {
		m, err := rc.c.Recv()
		if err != nil {
			return false
		}
		if _, ok := m.(derp.ServerInfoMessage); ok {
			return true
		}
	}
}

// reaches reports whether a packet from rc gets to to, sending it again
// until it does (relays and their mesh learn of clients asynchronously)
// or the test's time is up.
func (rc *relayClient) reaches(t *testing.T, to *relayClient) bool {
	t.Helper()
	ctx := testContext(t)
	got := make(chan bool, 1)
	go func() {
		for {
			m, err := to.c.Recv()
			if err != nil {
				got <- false
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok && p.Source == rc.priv.Public() {
				got <- true
				return
			}
		}
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		rc.c.Send(to.priv.Public(), []byte("hello"))
		select {
		case ok := <-got:
			return ok
		case <-tick.C:
		case <-ctx.Done():
			to.c.Close()
			<-got
			return false
		}
	}
}

// TestInfraRelayServesTheCoordinatorsPeers: the relay the command builds
// admits the peers of the coordinator it builds, from the start, and no
// one else; the DERP map advertises the STUN server it started.
func TestInfraRelayServesTheCoordinatorsPeers(t *testing.T) {
	n := startTestInfra(t, parseLocal(t))
	if n.derp == nil || n.stun == nil {
		t.Fatal("no built-in relay or STUN server")
	}
	if got := n.derpMap.Regions[999].Nodes[0].STUNPort; got != n.stun.Port() {
		t.Errorf("the DERP map's STUN port is %d, want the server's %d", got, n.stun.Port())
	}

	agent, client := key.NewNode(), key.NewNode()
	agentID := uuid.New()
	serve(t, n.coord, agentID, nil, agent.Public())
	serve(t, n.coord, uuid.New(), &agentID, client.Public())
	a, c := dialRelay(t, n.relayURL, agent), dialRelay(t, n.relayURL, client)
	if !a.admitted() || !c.admitted() {
		t.Fatal("the relay refused a peer of the coordinator")
	}
	if !c.reaches(t, a) {
		t.Error("no packet between two peers of the coordinator")
	}
	if dialRelay(t, n.relayURL, key.NewNode()).admitted() {
		t.Error("the relay admitted a key the coordinator does not know")
	}
}

// TestInfraReplicas: two servers on one database are replicas from the
// moment startInfra returns: each coordinator hears of the other's peers,
// both relays admit them, and the relays mesh with the shared key, so a
// client on one replica reaches an agent on the other through the relays.
func TestInfraReplicas(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	a := startTestInfra(t, parseLocal(t, "--postgres-url", dbURL))
	b := startTestInfra(t, parseLocal(t, "--postgres-url", dbURL))
	if !a.derp.MeshKey().Equal(b.derp.MeshKey()) {
		t.Fatal("the replicas' relays have different mesh keys")
	}

	agent, client := key.NewNode(), key.NewNode()
	agentID := uuid.New()
	serve(t, a.coord, agentID, nil, agent.Public())
	serve(t, b.coord, uuid.New(), &agentID, client.Public())
	// Each on its own replica's relay, through the mesh.
	ca, cb := dialRelay(t, a.relayURL, agent), dialRelay(t, b.relayURL, client)
	if !ca.admitted() || !cb.admitted() {
		t.Fatal("a relay refused a peer of its own replica")
	}
	if !cb.reaches(t, ca) {
		t.Error("no packet from the client on one replica to the agent on the other")
	}
	if !ca.reaches(t, cb) {
		t.Error("no packet back")
	}

	// Each relay also admits the other replica's peer, which its
	// coordinator knows from the other's events. (Last: a key connected
	// to two relays at once confuses the mesh.)
	if !dialRelay(t, b.relayURL, agent).admitted() || !dialRelay(t, a.relayURL, client).admitted() {
		t.Error("a relay refused a peer of the other replica")
	}
}
