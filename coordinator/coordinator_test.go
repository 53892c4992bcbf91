package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

// TestForwardingEdges checks that nodes travel along edges and nowhere else:
// two agents, each with clients, all publishing nodes.
func TestForwardingEdges(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentA, agentB := uuid.New(), uuid.New()
	a := startAgent(t, ctx, c, agentA)
	b := startAgent(t, ctx, c, agentB)
	a1 := startClient(t, ctx, c, uuid.New(), agentA)
	a2 := startClient(t, ctx, c, uuid.New(), agentA)
	b1 := startClient(t, ctx, c, uuid.New(), agentB)
	all := []*peer{a, b, a1, a2, b1}

	for _, p := range all {
		p.sendNode(ctx, newNode(p.id, 1))
	}
	// Each agent hears from each of its clients; each client from its agent.
	a.awaitNode(ctx, a1.id, 1)
	a.awaitNode(ctx, a2.id, 1)
	b.awaitNode(ctx, b1.id, 1)
	a1.awaitNode(ctx, agentA, 1)
	a2.awaitNode(ctx, agentA, 1)
	b1.awaitNode(ctx, agentB, 1)

	// A second round, then a barrier: a final update to each peer from its
	// own counterpart. Queues are FIFO, so once it arrives everything sent
	// to that peer earlier has arrived too.
	for _, p := range all {
		p.sendNode(ctx, newNode(p.id, 2))
	}
	a.sendNode(ctx, newNode(agentA, 3))
	b.sendNode(ctx, newNode(agentB, 3))
	a1.sendNode(ctx, newNode(a1.id, 3))
	b1.sendNode(ctx, newNode(b1.id, 3))
	a1.awaitNode(ctx, agentA, 3)
	a2.awaitNode(ctx, agentA, 3)
	b1.awaitNode(ctx, agentB, 3)
	a.awaitNode(ctx, a1.id, 3)
	a.awaitNode(ctx, a2.id, 2)
	b.awaitNode(ctx, b1.id, 3)

	allowed := map[*peer][]uuid.UUID{
		a:  {a1.id, a2.id},
		b:  {b1.id},
		a1: {agentA},
		a2: {agentA},
		b1: {agentB},
	}
	for p, want := range allowed {
		for _, id := range p.heard() {
			if !slices.Contains(want, id) {
				t.Errorf("peer %s heard about %s, which is not its counterpart", p.id, id)
			}
		}
	}
}

// TestIntroductions checks what a peer gets as it connects: a client the
// latest node of its agent, an agent the nodes of clients that came first.
func TestIntroductions(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()

	// A client that arrives before its agent.
	early := startClient(t, ctx, c, uuid.New(), agentID)
	early.sendNode(ctx, newNode(early.id, 7))
	waitUntil(t, ctx, "the early client's node is known", func() bool {
		s := c.Snapshot()
		return len(s.Agents) == 1 && len(s.Agents[0].Clients) == 1 && s.Agents[0].Clients[0].Node != nil
	})
	if c.AgentConnected(agentID) {
		t.Fatal("AgentConnected before the agent connected")
	}

	a := startAgent(t, ctx, c, agentID)
	a.awaitNode(ctx, early.id, 7)
	waitUntil(t, ctx, "agent connected", func() bool { return c.AgentConnected(agentID) })
	a.sendNode(ctx, newNode(agentID, 8))
	early.awaitNode(ctx, agentID, 8)

	// A client that arrives after the agent gets its node at once.
	late := startClient(t, ctx, c, uuid.New(), agentID)
	late.awaitNode(ctx, agentID, 8)
}

// leavingCases are the ways a peer leaves, and what its counterparts hear.
var leavingCases = []struct {
	name      string
	agentLeft bool // else a client leaves
	graceful  bool
	want      tether.PeerUpdateKind
}{
	{name: "agent disconnects", agentLeft: true, graceful: true, want: tether.PeerDisconnected},
	{name: "agent lost", agentLeft: true, want: tether.PeerLost},
	{name: "client disconnects", graceful: true, want: tether.PeerDisconnected},
	{name: "client lost", want: tether.PeerLost},
}

// TestLeaving checks PeerDisconnected against PeerLost, in both directions.
func TestLeaving(t *testing.T) {
	for _, tt := range leavingCases {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c := coordinator.New(coordinator.Options{})
			agentID := uuid.New()
			a := startAgent(t, ctx, c, agentID)
			cl := startClient(t, ctx, c, uuid.New(), agentID)
			other := startClient(t, ctx, c, uuid.New(), agentID)
			a.sendNode(ctx, newNode(agentID, 1))
			cl.sendNode(ctx, newNode(cl.id, 1))
			cl.awaitNode(ctx, agentID, 1)
			other.awaitNode(ctx, agentID, 1)
			a.awaitNode(ctx, cl.id, 1)

			leaver, watchers := cl, []*peer{a}
			if tt.agentLeft {
				leaver, watchers = a, []*peer{cl, other}
			}
			if tt.graceful {
				leaver.send(ctx, &tether.CoordinateRequest{Disconnect: true})
			} else {
				leaver.s.breakConn()
			}
			err := leaver.wait(ctx)
			if tt.graceful && err != nil {
				t.Errorf("serve after Disconnect = %v, want nil", err)
			}
			if !tt.graceful && err == nil {
				t.Error("serve after a broken stream = nil, want an error")
			}
			for _, w := range watchers {
				u := w.awaitKind(ctx, leaver.id, tt.want)
				if u.Reason == "" {
					t.Errorf("%s update has no reason", tt.want)
				}
			}
			if tt.agentLeft {
				if c.AgentConnected(agentID) {
					t.Error("AgentConnected after the agent left")
				}
				// The clients keep their binding: the agent's return
				// reintroduces them.
				back := startAgent(t, ctx, c, agentID)
				back.awaitNode(ctx, cl.id, 1)
				back.sendNode(ctx, newNode(agentID, 2))
				cl.awaitNode(ctx, agentID, 2)
				other.awaitNode(ctx, agentID, 2)
			} else {
				s := c.Snapshot()
				if s.Clients != 1 {
					t.Errorf("snapshot has %d clients after one left, want 1", s.Clients)
				}
			}
		})
	}
}

// TestAgentReconnect replaces an agent's stream with a new one.
func TestAgentReconnect(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	old := startAgent(t, ctx, c, agentID)
	cl := startClient(t, ctx, c, uuid.New(), agentID)
	old.sendNode(ctx, newNode(agentID, 1))
	cl.sendNode(ctx, newNode(cl.id, 1))
	cl.awaitNode(ctx, agentID, 1)
	old.awaitNode(ctx, cl.id, 1)

	fresh := startAgent(t, ctx, c, agentID)
	if err := old.wait(ctx); !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("old stream ended with %v, want ErrReplaced", err)
	}
	// The new stream learns the client's node without asking.
	fresh.awaitNode(ctx, cl.id, 1)
	fresh.sendNode(ctx, newNode(agentID, 2))
	cl.awaitNode(ctx, agentID, 2)
	if !c.AgentConnected(agentID) {
		t.Error("agent not connected after its new stream took over")
	}
	// The replacement was silent: no lost or disconnected news.
	for _, u := range cl.updates() {
		if u.Kind != tether.PeerNode {
			t.Errorf("client got %s about the agent during a replacement", u.Kind)
		}
	}
	// A late request from the old stream cannot reach anyone: it is gone.
	// Leaving the new one still works as usual.
	fresh.s.breakConn()
	cl.awaitKind(ctx, agentID, tether.PeerLost)
}

// TestClientReconnectSameID replaces a client's stream and refuses to bind a
// connected client ID to a second agent.
func TestClientReconnectSameID(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID, clientID := uuid.New(), uuid.New()
	a := startAgent(t, ctx, c, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	first := startClient(t, ctx, c, clientID, agentID)
	first.awaitNode(ctx, agentID, 1)

	err := c.ServeClient(ctx, clientID, uuid.New(), newMemStream(1))
	if !errors.Is(err, coordinator.ErrClientBound) {
		t.Fatalf("binding a connected client to another agent: %v, want ErrClientBound", err)
	}

	second := startClient(t, ctx, c, clientID, agentID)
	if err := first.wait(ctx); !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("first stream ended with %v, want ErrReplaced", err)
	}
	second.awaitNode(ctx, agentID, 1)
	second.sendNode(ctx, newNode(clientID, 2))
	a.awaitNode(ctx, clientID, 2)
}

// TestInvalidNode checks that the coordinator validates nodes from any
// stream, not only WebSockets, and treats the sender as lost.
func TestInvalidNode(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(n *tether.Node)
		want   string
	}{
		{name: "other peer's address", mutate: func(n *tether.Node) {
			n.Addresses = []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(uuid.New()), 128)}
		}, want: "not this peer's tunnel address"},
		{name: "no key", mutate: func(n *tether.Node) { n.Key = key.NodePublic{} }, want: "node key is missing"},
		{name: "too many endpoints", mutate: func(n *tether.Node) {
			n.Endpoints = make([]netip.AddrPort, tether.MaxNodeEndpoints+1)
		}, want: "endpoints"},
		{name: "long DERP latency keys", mutate: func(n *tether.Node) {
			n.DERPLatency = hugeLatencies()
		}, want: "longer than 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c := coordinator.New(coordinator.Options{})
			agentID := uuid.New()
			a := startAgent(t, ctx, c, agentID)
			cl := startClient(t, ctx, c, uuid.New(), agentID)
			a.sendNode(ctx, newNode(agentID, 1))
			cl.awaitNode(ctx, agentID, 1)

			n := newNode(agentID, 2)
			tt.mutate(n)
			a.sendNode(ctx, n)
			err := a.wait(ctx)
			if !errors.Is(err, coordinator.ErrInvalidNode) {
				t.Fatalf("serve = %v, want ErrInvalidNode", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			cl.awaitKind(ctx, agentID, tether.PeerLost)
			for _, u := range cl.updates() {
				if u.Kind == tether.PeerNode && u.Node.PreferredDERP == 2 {
					t.Error("the invalid node was forwarded")
				}
			}
		})
	}
}

// TestSlowConsumer checks that a peer that does not read blocks no one,
// holds at most one pending update per counterpart, and gets the latest of
// each when it reads again.
func TestSlowConsumer(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	// The agent's responses go into an unbuffered channel that nobody reads
	// for now: its sender blocks inside Send.
	slow := newPeer(t, agentID, 0)
	go func() { slow.done <- c.ServeAgent(ctx, agentID, slow.s) }()

	const clients, rounds = 20, 10
	var cls []*peer
	for range clients {
		cls = append(cls, startClient(t, ctx, c, uuid.New(), agentID))
	}
	for r := 1; r <= rounds; r++ {
		for _, cl := range cls {
			cl.sendNode(ctx, newNode(cl.id, r))
		}
	}
	// Producers were not blocked (the sends above returned), and the agent
	// itself can still publish to its clients.
	slow.sendNode(ctx, newNode(agentID, 1))
	for _, cl := range cls {
		cl.awaitNode(ctx, agentID, 1)
	}
	waitUntil(t, ctx, "all updates queued", func() bool {
		s := c.Snapshot()
		if len(s.Agents) != 1 {
			return false
		}
		for _, cs := range s.Agents[0].Clients {
			if cs.Node == nil || cs.Node.PreferredDERP != rounds {
				return false
			}
		}
		return true
	})
	if p := c.Snapshot().Agents[0].Pending; p > clients {
		t.Errorf("slow agent has %d pending updates, want at most one per client (%d)", p, clients)
	}

	// Now read: each client's latest node arrives, and far fewer than
	// clients*rounds updates do.
	for _, cl := range cls {
		slow.awaitNode(ctx, cl.id, rounds)
	}
	if n := len(slow.updates()); n > clients+16 {
		t.Errorf("slow agent received %d updates for %d clients, want them coalesced", n, clients)
	}
}

// TestSendTimeout checks that a peer that stops reading altogether is
// dropped after SendTimeout, and its counterparts hear it was lost.
func TestSendTimeout(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{SendTimeout: 50 * time.Millisecond})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	stuck := newPeer(t, uuid.New(), 0)
	go func() { stuck.done <- c.ServeClient(ctx, stuck.id, agentID, stuck.s) }()
	stuck.sendNode(ctx, newNode(stuck.id, 1))

	err := stuck.wait(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not read") {
		t.Fatalf("stuck client ended with %v, want a send timeout", err)
	}
	a.awaitKind(ctx, stuck.id, tether.PeerLost)
}

func TestPushDERPMap(t *testing.T) {
	ctx := testContext(t)
	initial := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: {RegionID: 1, RegionCode: "one"}}}
	c := coordinator.New(coordinator.Options{DERPMap: initial})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	cl := startClient(t, ctx, c, uuid.New(), agentID)
	for _, p := range []*peer{a, cl} {
		if r := p.next(ctx, "initial DERP map"); r.DERPMap == nil || r.DERPMap.Regions[1] == nil {
			t.Fatalf("peer %s: first response %+v, want the initial DERP map", p.id, r)
		}
	}

	pushed := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{2: {RegionID: 2, RegionCode: "two"}}}
	c.PushDERPMap(pushed)
	for _, p := range []*peer{a, cl} {
		if r := p.next(ctx, "pushed DERP map"); r.DERPMap == nil || r.DERPMap.Regions[2] == nil {
			t.Fatalf("peer %s: got %+v, want the pushed DERP map", p.id, r)
		}
	}
	late := startClient(t, ctx, c, uuid.New(), agentID)
	if r := late.next(ctx, "current DERP map"); r.DERPMap == nil || r.DERPMap.Regions[2] == nil {
		t.Fatalf("late client: got %+v, want the pushed DERP map", r)
	}
}

func TestSnapshot(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	cl := startClient(t, ctx, c, uuid.New(), agentID)
	cl.awaitNode(ctx, agentID, 1)
	startClient(t, ctx, c, uuid.New(), uuid.New()) // waiting for an absent agent
	waitUntil(t, ctx, "two clients", func() bool { return c.Snapshot().Clients == 2 })

	s := c.Snapshot()
	if s.AgentsConnected != 1 || s.Clients != 2 || len(s.Agents) != 2 {
		t.Fatalf("snapshot: %d agents connected, %d clients, %d agents; want 1, 2, 2", s.AgentsConnected, s.Clients, len(s.Agents))
	}
	for _, as := range s.Agents {
		if as.ID == agentID && (!as.Connected || as.Node == nil || len(as.Clients) != 1 || as.Clients[0].ID != cl.id) {
			t.Errorf("connected agent: %+v", as)
		}
		if as.ID != agentID && (as.Connected || len(as.Clients) != 1) {
			t.Errorf("absent agent: %+v", as)
		}
	}

	// Everyone leaves: nothing remains.
	for _, p := range []*peer{a, cl} {
		p.s.breakConn()
		p.wait(ctx)
	}
	waitUntil(t, ctx, "only the waiting client remains", func() bool {
		s := c.Snapshot()
		return s.Clients == 1 && len(s.Agents) == 1 && !s.Agents[0].Connected
	})
}

// TestManyPeers runs a thousand agents with two clients each, and checks
// that every client gets exactly its own agent's node.
func TestManyPeers(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	const agents = 1000
	type pair struct {
		agent   *peer
		clients [2]*peer
	}
	pairs := make([]pair, agents)
	for i := range pairs {
		id := uuid.New()
		pairs[i].agent = startAgent(t, ctx, c, id)
		for j := range pairs[i].clients {
			pairs[i].clients[j] = startClient(t, ctx, c, uuid.New(), id)
		}
	}
	for i, p := range pairs {
		p.agent.sendNode(ctx, newNode(p.agent.id, i+1))
	}
	for i, p := range pairs {
		for _, cl := range p.clients {
			cl.awaitNode(ctx, p.agent.id, i+1)
			if h := cl.heard(); len(h) != 1 {
				t.Fatalf("client of agent %d heard about %d peers", i+1, len(h))
			}
		}
	}
	if s := c.Snapshot(); s.AgentsConnected != agents || s.Clients != 2*agents {
		t.Errorf("snapshot counts %d agents, %d clients; want %d, %d", s.AgentsConnected, s.Clients, agents, 2*agents)
	}
}

// BenchmarkFanOut measures one agent's node update reaching 100 clients.
func BenchmarkFanOut(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	as := newMemStream(0)
	done := make(chan error, 101)
	go func() { done <- c.ServeAgent(ctx, agentID, as) }()
	const clients = 100
	var streams []*memStream
	for range clients {
		s := newMemStream(1024)
		streams = append(streams, s)
		go func() { done <- c.ServeClient(ctx, uuid.New(), agentID, s) }()
	}
	n := newNode(agentID, 1)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		as.reqs <- &tether.CoordinateRequest{Node: n}
		for _, s := range streams {
			<-s.resps
		}
	}
	b.StopTimer()
	cancel()
	for range clients + 1 {
		<-done
	}
}

// hugeLatencies has region keys far longer than any region ID, which would
// let a node outgrow the response that forwards it.
func hugeLatencies() map[string]float64 {
	m := make(map[string]float64)
	for i := range tether.MaxNodeDERPRegions {
		k := fmt.Sprintf("%03d", i)
		for len(k) < 100 {
			k += "<"
		}
		m[k] = 0.01
	}
	return m
}
