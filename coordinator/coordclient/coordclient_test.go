package coordclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/internal/testwait"
)

const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fakeTunnel records what the client asks of the tunnel.
type fakeTunnel struct {
	mu      sync.Mutex
	peers   map[uuid.UUID]*tether.Node
	relays  map[uuid.UUID]*tether.Node // UpsertRelay
	lost    map[uuid.UUID]bool         // as SetPeerLost, UpsertPeer and RemovePeer leave it
	upserts int
	removed []uuid.UUID
	derpMap *tailcfg.DERPMap
}

func newFakeTunnel() *fakeTunnel {
	return &fakeTunnel{peers: make(map[uuid.UUID]*tether.Node), relays: make(map[uuid.UUID]*tether.Node), lost: make(map[uuid.UUID]bool)}
}

func (f *fakeTunnel) UpsertPeer(id uuid.UUID, n *tether.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers[id] = n
	f.upserts++
	delete(f.lost, id)
	return nil
}

func (f *fakeTunnel) UpsertRelay(id uuid.UUID, n *tether.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.relays[id] = n
	return nil
}

func (f *fakeTunnel) RemovePeer(id uuid.UUID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.peers, id)
	delete(f.relays, id)
	delete(f.lost, id)
	f.removed = append(f.removed, id)
}

func (f *fakeTunnel) SetPeerLost(id uuid.UUID, lost bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if lost {
		f.lost[id] = true
	} else {
		delete(f.lost, id)
	}
}

// isLost returns a condition: the tunnel was told id is lost (or not).
func (f *fakeTunnel) isLost(id uuid.UUID, want bool) func() bool {
	return func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lost[id] == want
	}
}

func (f *fakeTunnel) SetDERPMap(m *tailcfg.DERPMap) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.derpMap = m
}

func (f *fakeTunnel) peer(id uuid.UUID) *tether.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers[id]
}

func (f *fakeTunnel) removals() []uuid.UUID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uuid.UUID(nil), f.removed...)
}

func (f *fakeTunnel) upsertCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.upserts
}

// server is a coordinator behind a real WebSocket endpoint that can be
// restarted: a new coordinator on a new port, as after a server restart.
type server struct {
	t   *testing.T
	mu  sync.Mutex
	c   *coordinator.Coordinator
	srv *httptest.Server
	// stop ends the current coordinator's streams (they close with
	// "going away", as when a server shuts down).
	stop context.CancelFunc
	opts coordinator.Options
}

func newServer(t *testing.T, opts coordinator.Options) *server {
	s := &server{t: t, opts: opts}
	s.start()
	t.Cleanup(s.shutdown)
	return s
}

func (s *server) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c := coordinator.New(s.opts)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agentID, err := uuid.Parse(r.URL.Query().Get("agent"))
		if err != nil {
			http.Error(w, "bad agent", http.StatusBadRequest)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if cid := r.URL.Query().Get("client"); cid != "" {
			id := uuid.MustParse(cid)
			ws := coordinator.NewWebSocket(conn, id, coordinator.WebSocketOptions{})
			ws.Close(c.ServeClient(ctx, id, agentID, ws))
		} else {
			ws := coordinator.NewWebSocket(conn, agentID, coordinator.WebSocketOptions{})
			ws.Close(c.ServeAgent(ctx, agentID, ws))
		}
	}))
	s.mu.Lock()
	s.c, s.srv, s.stop = c, srv, cancel
	s.mu.Unlock()
}

func (s *server) shutdown() {
	s.mu.Lock()
	srv, stop := s.srv, s.stop
	s.mu.Unlock()
	stop()
	srv.Close()
}

func (s *server) restart() {
	s.shutdown()
	s.start()
}

func (s *server) coordinator() *coordinator.Coordinator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

// dialer returns a Dial func for the peer; it always dials the current
// server, and fails while *down is set.
func (s *server) dialer(query string, down *atomic.Bool, dials *atomic.Int32) func(context.Context) (*websocket.Conn, error) {
	return func(ctx context.Context) (*websocket.Conn, error) {
		if dials != nil {
			dials.Add(1)
		}
		if down != nil && down.Load() {
			return nil, errors.New("network down")
		}
		s.mu.Lock()
		url := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/?" + query
		s.mu.Unlock()
		conn, _, err := websocket.Dial(ctx, url, nil)
		return conn, err
	}
}

// peer is a coordclient.Client running against a server.
type peer struct {
	id     uuid.UUID
	tun    *fakeTunnel
	c      *coordclient.Client
	down   atomic.Bool // makes Dial fail
	dials  atomic.Int32
	conn   atomic.Pointer[websocket.Conn] // the latest dialed
	cancel context.CancelFunc
	done   chan error
}

func startPeer(t *testing.T, s *server, id uuid.UUID, query string, opts coordclient.Options) *peer {
	t.Helper()
	p := &peer{id: id, tun: newFakeTunnel(), done: make(chan error, 1)}
	dial := s.dialer(query, &p.down, &p.dials)
	opts.Dial = func(ctx context.Context) (*websocket.Conn, error) {
		conn, err := dial(ctx)
		if conn != nil {
			p.conn.Store(conn)
		}
		return conn, err
	}
	opts.Tunnel = p.tun
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	}
	p.c = coordclient.New(opts)
	p.c.SetNode(newNode(id, 1))
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

func startAgent(t *testing.T, s *server, id uuid.UUID, opts coordclient.Options) *peer {
	return startPeer(t, s, id, "agent="+id.String(), opts)
}

func startCLI(t *testing.T, s *server, agentID uuid.UUID, opts coordclient.Options) *peer {
	id := uuid.New()
	return startPeer(t, s, id, "agent="+agentID.String()+"&client="+id.String(), opts)
}

// stopGracefully cancels Run and returns its result.
func (p *peer) stopGracefully(t *testing.T, ctx context.Context) error {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-ctx.Done():
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

func newNode(id uuid.UUID, marker int) *tether.Node {
	return &tether.Node{
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
		PreferredDERP: marker,
		AsOf:          time.Now(),
	}
}

// waitUntil polls cond until it holds, or fails the test once ctx ends.
var waitUntil = testwait.Until

// hasNode reports whether tun holds id's node with the given marker.
func hasNode(tun *fakeTunnel, id uuid.UUID, marker int) func() bool {
	return func() bool {
		n := tun.peer(id)
		return n != nil && n.PreferredDERP == marker
	}
}

func TestIntroduction(t *testing.T) {
	ctx := testContext(t)
	dm := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: {RegionID: 1, RegionCode: "test"}}}
	s := newServer(t, coordinator.Options{DERPMap: dm})
	agentID := uuid.New()
	cli := startCLI(t, s, agentID, coordclient.Options{})

	// The CLI waits for an agent that is not there yet.
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	if _, err := cli.c.AwaitPeer(waitCtx, agentID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitPeer before the agent connected: %v", err)
	}
	cancel()

	agent := startAgent(t, s, agentID, coordclient.Options{})
	n, err := cli.c.AwaitPeer(ctx, agentID)
	if err != nil || n.PreferredDERP != 1 {
		t.Fatalf("AwaitPeer = %v, %v; want the agent's node", n, err)
	}
	waitUntil(t, ctx, "agent has the CLI's node", hasNode(agent.tun, cli.id, 1))
	if !cli.c.Connected() || !agent.c.Connected() {
		t.Error("Connected() = false while connected")
	}
	for _, p := range []*peer{cli, agent} {
		waitUntil(t, ctx, "DERP map applied", func() bool {
			p.tun.mu.Lock()
			defer p.tun.mu.Unlock()
			return p.tun.derpMap != nil && p.tun.derpMap.Regions[1] != nil
		})
	}

	// Node changes are sent as they come, and only the latest matters.
	for m := 2; m <= 5; m++ {
		agent.c.SetNode(newNode(agentID, m))
	}
	waitUntil(t, ctx, "CLI has the agent's latest node", hasNode(cli.tun, agentID, 5))
}

// TestGracefulLeave checks that cancelling Run says goodbye: the other side
// removes the peer at once.
func TestGracefulLeave(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, coordinator.Options{})
	agentID := uuid.New()
	agent := startAgent(t, s, agentID, coordclient.Options{})
	cli := startCLI(t, s, agentID, coordclient.Options{})
	waitUntil(t, ctx, "agent has the CLI", hasNode(agent.tun, cli.id, 1))

	if err := cli.stopGracefully(t, ctx); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	waitUntil(t, ctx, "agent removed the CLI", func() bool { return agent.tun.peer(cli.id) == nil })
	if cli.c.Connected() {
		t.Error("Connected() after Run returned")
	}
}

// TestServerRestart is the main promise: the coordinator going away and
// coming back removes no peer, and both sides send their nodes again.
func TestServerRestart(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, coordinator.Options{})
	agentID := uuid.New()
	opts := coordclient.Options{LostPeerTimeout: testTimeout}
	agent := startAgent(t, s, agentID, opts)
	cli := startCLI(t, s, agentID, opts)
	waitUntil(t, ctx, "CLI has the agent", hasNode(cli.tun, agentID, 1))
	waitUntil(t, ctx, "agent has the CLI", hasNode(agent.tun, cli.id, 1))

	// The server goes away; while it is down, the agent's node changes.
	agent.down.Store(true)
	cli.down.Store(true)
	s.shutdown()
	waitUntil(t, ctx, "both notice", func() bool { return !agent.c.Connected() && !cli.c.Connected() })
	agent.c.SetNode(newNode(agentID, 2))
	if cli.tun.peer(agentID) == nil || agent.tun.peer(cli.id) == nil {
		t.Fatal("a peer was removed from the tunnel when the coordinator went away")
	}

	// A new server with an empty coordinator: both reconnect and resend.
	s.start()
	agent.down.Store(false)
	cli.down.Store(false)
	waitUntil(t, ctx, "CLI has the agent's new node", hasNode(cli.tun, agentID, 2))
	waitUntil(t, ctx, "new coordinator knows the CLI's node", func() bool {
		sn := s.coordinator().Snapshot()
		return len(sn.Agents) == 1 && len(sn.Agents[0].Clients) == 1 && sn.Agents[0].Clients[0].Node != nil
	})
	waitUntil(t, ctx, "agent was reintroduced to the CLI", func() bool { return agent.tun.upsertCount() >= 2 })
	if r := append(cli.tun.removals(), agent.tun.removals()...); len(r) != 0 {
		t.Errorf("peers removed across a coordinator restart: %v", r)
	}
}

// TestLostPeer checks PeerLost: the peer stays until LostPeerTimeout, then
// goes; coming back in time cancels the removal.
func TestLostPeer(t *testing.T) {
	tests := []struct {
		name       string
		comesBack  bool
		wantRemove bool
	}{
		{name: "never comes back", wantRemove: true},
		{name: "comes back in time", comesBack: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			s := newServer(t, coordinator.Options{})
			agentID := uuid.New()
			timeout := 100 * time.Millisecond
			if tt.comesBack {
				timeout = testTimeout
			}
			cli := startCLI(t, s, agentID, coordclient.Options{LostPeerTimeout: timeout})
			// The agent's connection is one the test can break.
			var agentConn atomic.Pointer[websocket.Conn]
			var agentDown atomic.Bool
			dial := s.dialer("agent="+agentID.String(), &agentDown, nil)
			agent := coordclient.New(coordclient.Options{
				Dial: func(ctx context.Context) (*websocket.Conn, error) {
					conn, err := dial(ctx)
					agentConn.Store(conn)
					return conn, err
				},
				Tunnel:     newFakeTunnel(),
				MinBackoff: 5 * time.Millisecond,
				MaxBackoff: 20 * time.Millisecond,
			})
			agent.SetNode(newNode(agentID, 1))
			actx, stopAgent := context.WithCancel(ctx)
			agentDone := make(chan error, 1)
			go func() { agentDone <- agent.Run(actx) }()
			defer func() {
				stopAgent()
				<-agentDone
			}()
			waitUntil(t, ctx, "CLI has the agent", hasNode(cli.tun, agentID, 1))

			// Break the agent's socket without a goodbye.
			agentDown.Store(!tt.comesBack)
			agentConn.Load().CloseNow()
			if tt.comesBack {
				agent.SetNode(newNode(agentID, 2))
				waitUntil(t, ctx, "CLI has the agent's new node", hasNode(cli.tun, agentID, 2))
				if r := cli.tun.removals(); len(r) != 0 {
					t.Errorf("CLI removed %v though the agent came back", r)
				}
				return
			}
			// The CLI hears "lost": the agent stays for now...
			waitUntil(t, ctx, "coordinator dropped the agent", func() bool { return !s.coordinator().AgentConnected(agentID) })
			start := time.Now()
			if cli.tun.peer(agentID) == nil {
				t.Fatal("lost agent removed at once")
			}
			// ...and goes after the timeout.
			waitUntil(t, ctx, "lost agent expires", func() bool { return cli.tun.peer(agentID) == nil })
			if d := time.Since(start); d > timeout+time.Second {
				t.Errorf("lost agent removed after %v, want about %v", d, timeout)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
			defer cancel()
			if _, err := cli.c.AwaitPeer(wctx, agentID); err == nil {
				t.Error("AwaitPeer returned an expired peer")
			}
		})
	}
}

// TestPeerLeftWhileAway checks that a peer that left while this client was
// disconnected, so that the goodbye never reached it, is removed after the
// reconnect once it is clear the coordinator does not reintroduce it.
func TestPeerLeftWhileAway(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, coordinator.Options{})
	agentID := uuid.New()
	agent := startAgent(t, s, agentID, coordclient.Options{LostPeerTimeout: 200 * time.Millisecond})
	stays := startCLI(t, s, agentID, coordclient.Options{})
	leaves := startCLI(t, s, agentID, coordclient.Options{})
	waitUntil(t, ctx, "agent has both CLIs", func() bool {
		return hasNode(agent.tun, stays.id, 1)() && hasNode(agent.tun, leaves.id, 1)()
	})

	// The agent loses the coordinator; meanwhile one CLI leaves.
	agent.down.Store(true)
	agent.conn.Load().CloseNow()
	waitUntil(t, ctx, "agent disconnected", func() bool { return !s.coordinator().AgentConnected(agentID) })
	if err := leaves.stopGracefully(t, ctx); err != nil {
		t.Fatal(err)
	}
	if agent.tun.peer(leaves.id) == nil {
		t.Fatal("agent removed a peer while it could not have heard of its leaving")
	}
	agent.down.Store(false)

	// The one that stays is reintroduced; the other expires.
	waitUntil(t, ctx, "the CLI that left expires", func() bool { return agent.tun.peer(leaves.id) == nil })
	if agent.tun.peer(stays.id) == nil {
		t.Error("the CLI that stayed was removed")
	}
	if _, err := agent.c.AwaitPeer(ctx, stays.id); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelToldWhoIsLost checks what the tunnel hears of lost peers, from
// which it decides to end their connections: a peer the coordinator lost
// is lost until reintroduced; nothing is lost while this client's own
// coordination is down (a restarting server must not end sessions); and
// after a reconnect, a peer not yet reintroduced is lost (it may have died
// while this client was away).
func TestTunnelToldWhoIsLost(t *testing.T) {
	ctx := testContext(t)
	s := newServer(t, coordinator.Options{})
	agentID := uuid.New()
	agent := startAgent(t, s, agentID, coordclient.Options{})
	cli := startCLI(t, s, agentID, coordclient.Options{})
	waitUntil(t, ctx, "CLI has the agent", hasNode(cli.tun, agentID, 1))
	if cli.tun.isLost(agentID, true)() {
		t.Fatal("a connected agent is lost")
	}

	// The agent's coordination breaks: lost.
	agent.down.Store(true)
	agent.conn.Load().CloseNow()
	waitUntil(t, ctx, "the CLI's tunnel hears the agent is lost", cli.tun.isLost(agentID, true))
	// It comes back: no longer lost.
	agent.down.Store(false)
	waitUntil(t, ctx, "the agent is reintroduced", cli.tun.isLost(agentID, false))

	// Lost again; then the CLI's own coordination breaks: unknown.
	agent.down.Store(true)
	agent.conn.Load().CloseNow()
	waitUntil(t, ctx, "lost again", cli.tun.isLost(agentID, true))
	cli.down.Store(true)
	cli.conn.Load().CloseNow()
	waitUntil(t, ctx, "the CLI's tunnel no longer counts the agent lost", cli.tun.isLost(agentID, false))

	// The CLI reconnects while the agent is still away: lost once more.
	cli.down.Store(false)
	waitUntil(t, ctx, "the CLI reconnects", cli.c.Connected)
	waitUntil(t, ctx, "an agent not reintroduced after the reconnect is lost", cli.tun.isLost(agentID, true))
	agent.down.Store(false)
	waitUntil(t, ctx, "the agent is reintroduced", cli.tun.isLost(agentID, false))
	if r := cli.tun.removals(); len(r) != 0 {
		t.Errorf("CLI removed %v", r)
	}
}

func TestPermanentDialError(t *testing.T) {
	ctx := testContext(t)
	denied := errors.New("403 forbidden")
	var dials atomic.Int32
	c := coordclient.New(coordclient.Options{
		Dial: func(context.Context) (*websocket.Conn, error) {
			if dials.Add(1) < 3 {
				return nil, errors.New("connection refused")
			}
			return nil, coordclient.Permanent(denied)
		},
		Tunnel:     newFakeTunnel(),
		MinBackoff: time.Millisecond,
		MaxBackoff: 2 * time.Millisecond,
	})
	err := c.Run(ctx)
	if !errors.Is(err, denied) {
		t.Fatalf("Run = %v, want the permanent error", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3 (two retried, then the permanent one)", n)
	}
}

// TestRetryAfter: a dial error wrapped with RetryAfter spaces the next dial
// by at least its wait, even when the backoff is shorter, and a plain error
// after it goes back to the backoff.
func TestRetryAfter(t *testing.T) {
	ctx := testContext(t)
	const wait = time.Second
	var times []time.Time
	rctx, cancel := context.WithCancel(ctx)
	c := coordclient.New(coordclient.Options{
		Dial: func(context.Context) (*websocket.Conn, error) {
			times = append(times, time.Now())
			switch len(times) {
			case 1:
				return nil, coordclient.RetryAfter(errors.New("another agent is connected"), wait)
			case 3:
				cancel()
			}
			return nil, errors.New("connection refused")
		},
		Tunnel:     newFakeTunnel(),
		MinBackoff: time.Millisecond,
		MaxBackoff: 2 * time.Millisecond,
	})
	if err := c.Run(rctx); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if gap := times[1].Sub(times[0]); gap < wait {
		t.Errorf("dial after RetryAfter(%v) came %v later", wait, gap)
	}
	if gap := times[2].Sub(times[1]); gap >= wait {
		t.Errorf("dial after a plain error came %v later, want the backoff (≤ 2 ms, give or take the machine)", gap)
	}
}

// A server that closes with CloseAccessRevoked ends Run with the reason,
// without a retry: the credentials no longer work.
func TestAccessRevoked(t *testing.T) {
	ctx := testContext(t)
	const reason = "your account was suspended"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		conn.Close(tether.CloseAccessRevoked, reason)
	}))
	defer srv.Close()
	var dials atomic.Int32
	c := coordclient.New(coordclient.Options{
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			dials.Add(1)
			conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			return conn, err
		},
		Tunnel:     newFakeTunnel(),
		MinBackoff: time.Millisecond,
		MaxBackoff: 2 * time.Millisecond,
	})
	err := c.Run(ctx)
	var revoked *coordclient.AccessRevokedError
	if !errors.As(err, &revoked) || revoked.Reason != reason {
		t.Fatalf("Run = %v, want an AccessRevokedError with the reason", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

// TestReconnectBackoff checks that failing dials are spaced out, growing to
// the maximum.
func TestReconnectBackoff(t *testing.T) {
	ctx := testContext(t)
	const minB, maxB = 20 * time.Millisecond, 80 * time.Millisecond
	var mu sync.Mutex
	var times []time.Time
	rctx, cancel := context.WithCancel(ctx)
	c := coordclient.New(coordclient.Options{
		Dial: func(context.Context) (*websocket.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			times = append(times, time.Now())
			if len(times) == 7 {
				cancel()
			}
			return nil, errors.New("connection refused")
		},
		Tunnel:     newFakeTunnel(),
		MinBackoff: minB,
		MaxBackoff: maxB,
	})
	if err := c.Run(rctx); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	steps := []time.Duration{20, 40, 80, 80, 80, 80}
	for i, step := range steps {
		step *= time.Millisecond
		gap := times[i+1].Sub(times[i])
		if gap < step/2 {
			t.Errorf("wait %d was %v, want at least %v", i, gap, step/2)
		}
		if gap > step+time.Second {
			t.Errorf("wait %d was %v, want about %v at most", i, gap, step)
		}
	}
}

// misbehavingServer accepts coordination sockets and hands them to fn.
func misbehavingServer(t *testing.T, fn func(ctx context.Context, conn *websocket.Conn)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer conn.CloseNow()
		fn(ctx, conn)
	}))
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestBadCoordinator checks that a coordinator that breaks the protocol, or
// stops answering pings, is left and redialed.
func TestBadCoordinator(t *testing.T) {
	tests := []struct {
		name       string
		heartbeat  time.Duration
		serve      func(ctx context.Context, conn *websocket.Conn) (websocket.StatusCode, string)
		wantStatus websocket.StatusCode
		wantReason string
	}{
		{
			name: "malformed JSON",
			serve: func(ctx context.Context, conn *websocket.Conn) (websocket.StatusCode, string) {
				conn.Write(ctx, websocket.MessageText, []byte(`{"peers": [`))
				return readClose(ctx, conn)
			},
			wantStatus: websocket.StatusUnsupportedData,
			wantReason: "malformed coordinate response",
		},
		{
			name: "oversized",
			serve: func(ctx context.Context, conn *websocket.Conn) (websocket.StatusCode, string) {
				conn.Write(ctx, websocket.MessageText, []byte(`{"x":"`+strings.Repeat("a", tether.MaxCoordinateMessage)+`"}`))
				return readClose(ctx, conn)
			},
			wantStatus: websocket.StatusMessageTooBig,
			wantReason: "larger than",
		},
		{
			name:      "unanswered pings",
			heartbeat: 20 * time.Millisecond,
			serve: func(ctx context.Context, conn *websocket.Conn) (websocket.StatusCode, string) {
				// Never read, so never answer a ping; wait for the
				// client to hang up.
				<-ctx.Done()
				return -1, ""
			},
			wantStatus: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			type closed struct {
				status websocket.StatusCode
				reason string
			}
			closes := make(chan closed, 10)
			url := misbehavingServer(t, func(sctx context.Context, conn *websocket.Conn) {
				cctx, cancel := context.WithTimeout(sctx, testTimeout)
				defer cancel()
				st, r := tt.serve(cctx, conn)
				closes <- closed{st, r}
			})
			var dials atomic.Int32
			rctx, cancel := context.WithCancel(ctx)
			c := coordclient.New(coordclient.Options{
				Dial: func(ctx context.Context) (*websocket.Conn, error) {
					if dials.Add(1) == 2 {
						cancel() // the redial is what this test wants to see
					}
					conn, _, err := websocket.Dial(ctx, url, nil)
					return conn, err
				},
				Tunnel:            newFakeTunnel(),
				HeartbeatInterval: tt.heartbeat,
				MinBackoff:        time.Millisecond,
				MaxBackoff:        2 * time.Millisecond,
			})
			if err := c.Run(rctx); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if dials.Load() < 2 {
				t.Fatal("client did not redial")
			}
			if tt.wantStatus == -1 {
				return
			}
			got := <-closes
			if got.status != tt.wantStatus || !strings.Contains(got.reason, tt.wantReason) {
				t.Errorf("client closed with %v %q, want %v containing %q", got.status, got.reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

// readClose reads until the client closes, and returns its status and reason.
func readClose(ctx context.Context, conn *websocket.Conn) (websocket.StatusCode, string) {
	for {
		_, _, err := conn.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, err.Error()
		}
	}
}

// TestLeaveUnresponsiveCoordinator checks that Run returns soon after its
// context ends even when the coordinator takes no goodbye.
func TestLeaveUnresponsiveCoordinator(t *testing.T) {
	ctx := testContext(t)
	url := misbehavingServer(t, func(ctx context.Context, conn *websocket.Conn) {
		<-ctx.Done() // never read, never answer the close handshake
	})
	cancel, done := runConnected(t, ctx, url, coordclient.Options{})
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	// The goodbye is bounded by two seconds; allow for a slow machine.
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
}

// TestQuickLeave checks that with QuickLeave the goodbye is the Disconnect
// alone: the coordinator reads it, and then the socket's end, with no
// close handshake that would hold the client for a round trip.
func TestQuickLeave(t *testing.T) {
	ctx := testContext(t)
	type seen struct {
		disconnect bool
		closeCode  websocket.StatusCode // of what ended the socket; -1: no close frame
	}
	got := make(chan seen, 1)
	url := misbehavingServer(t, func(ctx context.Context, conn *websocket.Conn) {
		var s seen
		defer func() { got <- s }()
		for {
			var req tether.CoordinateRequest
			err := wsjson.Read(ctx, conn, &req)
			if err != nil {
				s.closeCode = websocket.CloseStatus(err)
				return
			}
			s.disconnect = s.disconnect || req.Disconnect
		}
	})
	cancel, done := runConnected(t, ctx, url, coordclient.Options{QuickLeave: true})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	var s seen
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatal("the coordinator did not see the socket end")
	}
	if !s.disconnect {
		t.Error("the coordinator did not get the Disconnect")
	}
	if s.closeCode != -1 {
		t.Errorf("the client closed with a close frame (%v) and so waited for the coordinator's", s.closeCode)
	}
}

// runConnected runs a client with opts (no heartbeats, a fake tunnel) that
// dials the coordinator at url, and returns once it is connected: cancel
// ends Run, whose result then arrives on done.
func runConnected(t *testing.T, ctx context.Context, url string, opts coordclient.Options) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	connected := make(chan struct{})
	var once sync.Once
	opts.Dial = func(ctx context.Context) (*websocket.Conn, error) {
		conn, _, err := websocket.Dial(ctx, url, nil)
		if err == nil {
			once.Do(func() { close(connected) })
		}
		return conn, err
	}
	opts.Tunnel = newFakeTunnel()
	opts.HeartbeatInterval = -1
	c := coordclient.New(opts)
	c.SetNode(newNode(uuid.New(), 1))
	rctx, cancel := context.WithCancel(ctx)
	result := make(chan error, 1)
	go func() { result <- c.Run(rctx) }()
	select {
	case <-connected:
	case <-ctx.Done():
		cancel()
		t.Fatal("never connected")
	}
	return cancel, result
}
