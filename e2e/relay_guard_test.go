package e2e

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether/internal/harness"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"
)

// stranger is a DERP client of the server's built-in relay that is no peer
// of the deployment: a key of its own and no credentials.
type stranger struct {
	pub  key.NodePublic
	recv func() (derp.ReceivedMessage, error)
	send func(key.NodePublic, []byte) error
}

// dialStranger connects to the relay at relayURL (http://HOST/derp) with a
// fresh key, over DERP's own upgrade or, with overWebSocket, over a
// WebSocket as browsers and proxied peers do. meshKey may be zero.
func dialStranger(t *testing.T, ctx context.Context, relayURL string, overWebSocket bool, meshKey key.DERPMesh) *stranger {
	t.Helper()
	priv := key.NewNode()
	quiet := func(string, ...any) {}
	if !overWebSocket {
		c, err := derphttp.NewClient(priv, relayURL, quiet, netmon.NewStatic())
		if err != nil {
			t.Fatal(err)
		}
		c.MeshKey = meshKey
		t.Cleanup(func() { c.Close() })
		if err := c.Connect(ctx); err != nil {
			t.Fatalf("connect to the relay: %v", err)
		}
		return &stranger{pub: priv.Public(), recv: c.Recv, send: c.Send}
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(relayURL, "http"), &websocket.DialOptions{Subprotocols: []string{"derp"}})
	if err != nil {
		t.Fatalf("dial the relay over WebSocket: %v", err)
	}
	nc := websocket.NetConn(context.Background(), ws, websocket.MessageBinary)
	t.Cleanup(func() { nc.Close() })
	var opts []derp.ClientOpt
	if !meshKey.IsZero() {
		opts = append(opts, derp.MeshKey(meshKey))
	}
	c, err := derp.NewClient(priv, nc, bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc)), quiet, opts...)
	if err != nil {
		t.Fatalf("DERP handshake over WebSocket: %v", err)
	}
	return &stranger{pub: priv.Public(), recv: c.Recv, send: c.Send}
}

// TestRelayServesOnlyPeers is the bandwidth-abuse check: clients with keys
// of their own and no credentials try to relay packets to each other
// through the server's /derp, over DERP's upgrade and over WebSocket, with
// no mesh key or a wrong one; the relay refuses them all, while a real
// ssh and ping through the relay (--disable-direct) still work.
func TestRelayServesOnlyPeers(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	wrongMesh, err := key.ParseDERPMesh(strings.Repeat("5a", 32))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), harness.CommandTimeout)
	defer cancel()
	relayURL := srv.URL + "/derp"
	type attempt struct {
		name string
		a, b *stranger
	}
	var attempts []attempt
	for _, ws := range []bool{false, true} {
		via := "DERP upgrade"
		if ws {
			via = "WebSocket"
		}
		attempts = append(attempts,
			attempt{via + ", no mesh key", dialStranger(t, ctx, relayURL, ws, key.DERPMesh{}), dialStranger(t, ctx, relayURL, ws, key.DERPMesh{})},
			attempt{via + ", wrong mesh key", dialStranger(t, ctx, relayURL, ws, wrongMesh), dialStranger(t, ctx, relayURL, ws, wrongMesh)})
	}
	// Each pair tries at once, as an abuser would: a sends to b until b's
	// connection ends, and b reports whether anything arrived.
	var wg sync.WaitGroup
	for _, at := range attempts {
		wg.Go(func() {
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if at.a.send(at.b.pub, []byte("free bandwidth")) != nil {
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			defer close(done)
			for {
				m, err := at.b.recv()
				if err != nil {
					return // refused: the relay closed the connection
				}
				switch m.(type) {
				case derp.ServerInfoMessage:
					t.Errorf("%s: the relay admitted a stranger", at.name)
				case derp.ReceivedPacket:
					t.Errorf("%s: the relay carried a packet between strangers", at.name)
					return
				}
			}
		})
	}
	wg.Wait()

	// The deployment's own peers still relay.
	if out := u.Must("ssh", "dev", "--disable-direct", "--", "echo", "relayed"); !strings.Contains(out, "relayed") {
		t.Errorf("ssh through the relay: %q", out)
	}
	if out := u.Must("ping", "dev", "-n", "2", "--disable-direct"); !strings.Contains(out, "DERP") {
		t.Errorf("ping through the relay: %q", out)
	}
}

// TestRelayAdmitsPeersOfOtherReplicas: a relay admits a peer whose
// coordination goes through another replica. Replica B hands out a DERP
// map whose built-in relay is replica A's (B's --access-url names A, as if
// both sat behind one load balancer that sent the agent's relay connection
// to A): the agent coordinates through B but relays through A, which knows
// its key only from B's events. Relayed ssh works only if A admits it.
func TestRelayAdmitsPeersOfOtherReplicas(t *testing.T) {
	pg := postgresURL(t)
	a := here.StartServer(t, "--postgres-url", pg)
	bAddr := "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
	b := here.StartServerWith(t, harness.ServerOptions{Addr: bAddr, Args: []string{"--postgres-url", pg, "--access-url", a.URL}})
	u := here.Admin(t, a.URL)
	token, _ := u.CreateWorkspace("dev")
	here.StartAgent(t, "http://"+bAddr, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected to replica B", func() bool {
		return strings.Contains(b.Output(), `msg="agent connected"`) && u.AgentStatus("dev") == "connected"
	})
	if out := u.Must("ssh", "dev", "--disable-direct", "--", "echo", "admitted-across-replicas"); !strings.Contains(out, "admitted-across-replicas") {
		t.Errorf("ssh through replica A's relay to an agent coordinated by B: %q", out)
	}
}
