package agentnet

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/internal/testwait"
	"github.com/tetherdev/tether/tunnel"
)

// testTimeout bounds every test; nothing waits on fixed sleeps.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// noRelays is a DERP map without regions: the tunnels on loopback go
// direct, and no test needs a relay.
func noRelays() *tailcfg.DERPMap { return &tailcfg.DERPMap{} }

// newNet returns a Net on a fresh coordinator, closed when the test ends.
func newNet(t *testing.T, opts Options) (*Net, *coordinator.Coordinator) {
	t.Helper()
	c := coordinator.New(coordinator.Options{})
	opts.Coordinator, opts.DERPMap = c, noRelays()
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n, c
}

// errGoodbye, as the cause that ends an agentStream, makes it say goodbye.
var errGoodbye = errors.New("goodbye")

// agentStream is a fake agent's coordination stream: the server's own
// in-memory stream, which the test ends as an agent ends its own, by
// cancelling left (with errGoodbye when the agent stops, with another
// cause when its connection breaks).
type agentStream struct {
	*localStream
	left context.Context
}

func (s *agentStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(s.left, cancel)()
	req, err := s.localStream.Recv(ctx)
	switch cause := context.Cause(s.left); {
	case cause == errGoodbye:
		return &tether.CoordinateRequest{Disconnect: true}, nil
	case cause != nil:
		return nil, cause
	}
	return req, err
}

// fakeAgent is a workspace agent reduced to its tunnel, with an echo
// server on the tunnel's port echoPort.
type fakeAgent struct {
	id     uuid.UUID
	conn   *tunnel.Conn
	stream *agentStream
	end    context.CancelCauseFunc // ends stream
	served chan error              // ServeAgent's result
}

const echoPort = 7

// startAgent connects an agent for workspace id to c. A second agent with
// the same id is a restart: a new process with new keys.
func startAgent(t *testing.T, c *coordinator.Coordinator, id uuid.UUID) *fakeAgent {
	t.Helper()
	ctx := testContext(t)
	conn, err := tunnel.New(ctx, tunnel.Options{ID: id, DERPMap: noRelays()})
	if err != nil {
		t.Fatal(err)
	}
	peers := coordclient.NewPeers(coordclient.PeersOptions{Tunnel: conn})
	left, end := context.WithCancelCause(context.Background())
	a := &fakeAgent{
		id:     id,
		conn:   conn,
		stream: &agentStream{localStream: &localStream{peers: peers}, left: left},
		end:    end,
		served: make(chan error, 1),
	}
	ln, err := conn.Listen("tcp", echoPort)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	conn.SetNodeCallback(a.stream.setNode)
	sctx, cancel := context.WithCancel(context.Background())
	go func() { a.served <- c.ServeAgent(sctx, id, a.stream) }()
	t.Cleanup(func() {
		cancel()
		end(nil)
		<-a.served
		a.served <- nil
		peers.Close()
		ln.Close()
		conn.Close()
		wg.Wait()
	})
	return a
}

// leave ends the agent's stream: gracefully for a nil err, broken
// otherwise. The agent's tunnel stays, as a process whose coordination
// broke keeps it.
func (a *fakeAgent) leave(t *testing.T, err error) {
	t.Helper()
	a.end(cmp.Or(err, errGoodbye))
	select {
	case got := <-a.served:
		a.served <- got
	case <-testContext(t).Done():
		t.Fatal("the agent's stream did not end")
	}
}

// echo dials the agent through n and checks a round trip.
func echo(t *testing.T, ctx context.Context, n *Net, agentID uuid.UUID) net.Conn {
	t.Helper()
	c, err := n.Dial(ctx, agentID, echoPort)
	if err != nil {
		t.Fatalf("dial the agent: %v", err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	return c
}

// waitFor polls cond until it holds, or fails the test once ctx ends.
var waitFor = testwait.Until

func awaitClosed(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("timed out waiting until %s", what)
	}
}

// TestWatchAgent checks what a web terminal hears when the agent leaves,
// in each of the ways it can.
func TestWatchAgent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave func(t *testing.T, c *coordinator.Coordinator, a *fakeAgent)
		want  error
	}{
		{"stopped", func(t *testing.T, _ *coordinator.Coordinator, a *fakeAgent) { a.leave(t, nil) }, ErrAgentDisconnected},
		{"coordination broke", func(t *testing.T, _ *coordinator.Coordinator, a *fakeAgent) {
			a.leave(t, errors.New("connection reset"))
		}, ErrAgentLost},
		{"restarted", func(t *testing.T, c *coordinator.Coordinator, a *fakeAgent) {
			startAgent(t, c, a.id)
		}, ErrAgentRestarted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			n, c := newNet(t, Options{})
			a := startAgent(t, c, uuid.New())
			if left, _ := n.WatchAgent(a.id); !isClosed(left) {
				t.Error("an agent the server has no tunnel to is not reported away")
			}
			conn := echo(t, ctx, n, a.id)
			defer conn.Close()
			left, why := n.WatchAgent(a.id)
			if isClosed(left) {
				t.Fatal("a present agent is reported away")
			}
			tc.leave(t, c, a)
			awaitClosed(t, ctx, left, "the watcher hears the agent left")
			if !errors.Is(why(), tc.want) {
				t.Errorf("why = %v, want %v", why(), tc.want)
			}
		})
	}
}

// TestAgentComesBack checks that a lost agent that is reintroduced starts
// a new stay: the server's tunnel keeps it meanwhile, and new connections
// work once it is back.
func TestAgentComesBack(t *testing.T) {
	ctx := testContext(t)
	n, c := newNet(t, Options{})
	a := startAgent(t, c, uuid.New())
	echo(t, ctx, n, a.id).Close()
	left, _ := n.WatchAgent(a.id)
	a.leave(t, errors.New("connection reset"))
	awaitClosed(t, ctx, left, "the agent is lost")

	// The same process reconnects: same keys, a new stream that starts
	// by sending the node again.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.stream.sent = nil
	a.stream.left = context.Background()
	served := make(chan error, 1)
	go func() { served <- c.ServeAgent(sctx, a.id, a.stream) }()
	defer func() {
		cancel()
		<-served
	}()
	waitFor(t, ctx, "the agent is reintroduced", func() bool {
		left, _ := n.WatchAgent(a.id)
		return !isClosed(left)
	})
	echo(t, ctx, n, a.id).Close()
}

// TestIdleTunnelClosed checks that a tunnel that carries nothing is closed
// after IdleTimeout, that one in use is not, however long it is quiet or
// takes to open (far longer than the 1 ms here), and that a new dial
// opens another.
func TestIdleTunnelClosed(t *testing.T) {
	ctx := testContext(t)
	n, c := newNet(t, Options{IdleTimeout: time.Millisecond})
	busy, idle := startAgent(t, c, uuid.New()), startAgent(t, c, uuid.New())
	conn := echo(t, ctx, n, busy.id)
	defer conn.Close()
	busyTunnel := n.tunnelID(busy.id)
	idleConn := echo(t, ctx, n, idle.id)
	idleTunnel := n.tunnelID(idle.id)
	idleConn.Close()

	// The busy tunnel was last used before the idle one: by the time the
	// idle one is closed, only its open connection keeps the busy one.
	waitFor(t, ctx, "the idle tunnel is closed", func() bool { return n.tunnelID(idle.id) == uuid.Nil })
	if n.tunnelID(busy.id) != busyTunnel {
		t.Fatal("a tunnel with an open connection was closed")
	}
	echo(t, ctx, n, idle.id).Close()
	if id := n.tunnelID(idle.id); id == uuid.Nil || id == idleTunnel {
		t.Errorf("after the idle close, dialing used tunnel %v (the first was %v)", id, idleTunnel)
	}
}

// TestPing checks Ping over the server's tunnel, which it opens.
func TestPing(t *testing.T) {
	ctx := testContext(t)
	n, c := newNet(t, Options{})
	a := startAgent(t, c, uuid.New())
	if _, err := n.Ping(ctx, a.id); err != nil {
		t.Fatalf("Ping = %v", err)
	}
}

// TestDialAgentAway checks that a dial to an agent that never connects
// waits for it until its context ends, and that Close ends everything.
func TestDialAgentAway(t *testing.T) {
	ctx := testContext(t)
	n, _ := newNet(t, Options{})
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := n.Dial(dctx, uuid.New(), echoPort); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial to an absent agent = %v, want the context's deadline", err)
	}
	n.Close()
	if _, err := n.Dial(ctx, uuid.New(), echoPort); err == nil {
		t.Error("Dial after Close succeeded")
	}
}

// TestRefusedCoordinationReopens: a tunnel whose remote coordinator
// refuses it for good (a workspace proxy with no live grant) fails its
// callers, and the next caller gets a fresh tunnel and a fresh dial, not
// the dead one.
func TestRefusedCoordinationReopens(t *testing.T) {
	ctx := testContext(t)
	refused := errors.New("403 Forbidden: no live grant")
	dials := make(chan uuid.UUID, 8)
	n, err := New(Options{
		DERPMap: noRelays(),
		Dial: func(ctx context.Context, clientID, agentID uuid.UUID) (*websocket.Conn, error) {
			dials <- clientID
			return nil, coordclient.Permanent(refused)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	agent := uuid.New()
	var first uuid.UUID
	for i := range 2 {
		if _, err := n.Dial(ctx, agent, echoPort); err == nil {
			t.Fatalf("dial %d through a refused tunnel succeeded", i)
		}
		select {
		case id := <-dials:
			if i == 1 && id == first {
				t.Errorf("the second tunnel has the first one's peer ID")
			}
			first = id
		case <-ctx.Done():
			t.Fatalf("dial %d: the coordinator was not asked again", i)
		}
	}
}
