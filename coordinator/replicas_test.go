package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

// memBus connects Coordinators in memory, as the PostgreSQL bus does: every
// published event goes, encoded as JSON, to every replica on the bus (the
// publisher included, as NOTIFY does), in the order it was published.
// Delivery is asynchronous, by one goroutine per replica.
type memBus struct {
	t *testing.T

	mu        sync.Mutex
	inboxes   []*inbox           // guarded by mu
	cut       map[uuid.UUID]bool // replicas whose events are dropped; guarded by mu
	deaf      map[uuid.UUID]bool // replicas that miss the events sent to them; guarded by mu
	published map[uuid.UUID]int  // events delivered per publisher; guarded by mu
}

// inbox is one replica's end of the bus: events wait in pending until its
// goroutine hands them to HandleEvent.
type inbox struct {
	id   uuid.UUID
	c    *coordinator.Coordinator
	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	pending [][]byte // guarded by mu
	queued  int      // events ever queued; guarded by mu
	handled int      // events handed to HandleEvent and returned; guarded by mu
}

func newMemBus(t *testing.T) *memBus {
	b := &memBus{t: t, cut: make(map[uuid.UUID]bool), deaf: make(map[uuid.UUID]bool), published: make(map[uuid.UUID]int)}
	// Registered before any replica or peer, so it runs after their
	// cleanups, which still publish.
	t.Cleanup(b.stop)
	return b
}

// replica is one Coordinator on a memBus.
type replica struct {
	*coordinator.Coordinator
	id uuid.UUID
}

// join starts a replica on the bus. wrap, if not nil, wraps the replica's
// end of the bus.
func (b *memBus) join(t *testing.T, wrap func(coordinator.Bus) coordinator.Bus) replica {
	t.Helper()
	id := uuid.New()
	var bus coordinator.Bus = busEnd{b: b, from: id}
	if wrap != nil {
		bus = wrap(bus)
	}
	c := coordinator.New(coordinator.Options{Replica: id, Bus: bus})
	t.Cleanup(c.Close)
	// After the test's peers are gone (their cleanups run first), the
	// node key index must still match the graph, whatever happened.
	t.Cleanup(func() {
		if err := c.CheckNodeKeys(); err != nil {
			t.Errorf("replica %s: %v", id, err)
		}
	})
	in := &inbox{id: id, c: c, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go in.run(t)
	b.mu.Lock()
	b.inboxes = append(b.inboxes, in)
	b.mu.Unlock()
	return replica{Coordinator: c, id: id}
}

// busEnd is the Bus one replica publishes to.
type busEnd struct {
	b    *memBus
	from uuid.UUID
}

func (e busEnd) Publish(ctx context.Context, ev coordinator.Event) error {
	if ev.Replica != e.from {
		e.b.t.Errorf("replica %s published an event from %s", e.from, ev.Replica)
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	e.b.mu.Lock()
	defer e.b.mu.Unlock()
	if e.b.cut[e.from] {
		return errors.New("replica cut off the bus")
	}
	e.b.published[e.from]++
	for _, in := range e.b.inboxes {
		if e.b.deaf[in.id] {
			continue
		}
		in.mu.Lock()
		in.pending = append(in.pending, raw)
		in.queued++
		in.mu.Unlock()
		select {
		case in.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

func (in *inbox) run(t *testing.T) {
	defer close(in.done)
	for {
		select {
		case <-in.stop:
			return
		case <-in.wake:
		}
		in.mu.Lock()
		batch := in.pending
		in.pending = nil
		in.mu.Unlock()
		for _, raw := range batch {
			var ev coordinator.Event
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Errorf("decode event: %v", err)
			} else {
				in.c.HandleEvent(ev)
			}
			in.mu.Lock()
			in.handled++
			in.mu.Unlock()
		}
	}
}

// cutOff drops the later events of replica id, as if it had died.
func (b *memBus) cutOff(id uuid.UUID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cut[id] = true
}

// setDeaf makes replica id miss the events sent to it (or hear them again),
// as when its bus connection breaks.
func (b *memBus) setDeaf(id uuid.UUID, deaf bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deaf[id] = deaf
}

// delivered reports whether every event published so far has been handled.
func (b *memBus) delivered() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, in := range b.inboxes {
		in.mu.Lock()
		done := in.queued == in.handled
		in.mu.Unlock()
		if !done {
			return false
		}
	}
	return true
}

// publishedBy returns how many events replica id has published.
func (b *memBus) publishedBy(id uuid.UUID) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.published[id]
}

func (b *memBus) stop() {
	b.mu.Lock()
	inboxes := b.inboxes
	b.inboxes = nil
	b.mu.Unlock()
	for _, in := range inboxes {
		close(in.stop)
		<-in.done
	}
}

// gatedBus holds every Publish until open is closed.
type gatedBus struct {
	next coordinator.Bus
	open chan struct{}
}

func (g gatedBus) Publish(ctx context.Context, ev coordinator.Event) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.next.Publish(ctx, ev)
}

// onlyNodes fails the test if p heard anything but nodes about id.
func onlyNodes(t *testing.T, p *peer, id uuid.UUID) {
	t.Helper()
	for _, u := range p.updates() {
		if u.ID == id && u.Kind != tether.PeerNode {
			t.Errorf("peer %s heard %s about %s", p.id, u.Kind, id)
		}
	}
}

// TestReplicasIntroductions puts a client on one replica and its agent on
// another, in both orders, and checks that each gets the other's node and
// its updates.
func TestReplicasIntroductions(t *testing.T) {
	for _, agentFirst := range []bool{true, false} {
		name := "client first"
		if agentFirst {
			name = "agent first"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			bus := newMemBus(t)
			ra, rb := bus.join(t, nil), bus.join(t, nil)
			agentID := uuid.New()

			var a, cl *peer
			if agentFirst {
				a = startAgent(t, ctx, rb.Coordinator, agentID)
				a.sendNode(ctx, newNode(agentID, 1))
				waitUntil(t, ctx, "replica A sees the agent", func() bool { return ra.AgentConnected(agentID) })
				cl = startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
				cl.sendNode(ctx, newNode(cl.id, 1))
			} else {
				cl = startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
				cl.sendNode(ctx, newNode(cl.id, 1))
				waitUntil(t, ctx, "replica B knows the client's node", func() bool {
					s := rb.Snapshot()
					return len(s.Agents) == 1 && len(s.Agents[0].RemoteClients) == 1 && s.Agents[0].RemoteClients[0].Node != nil
				})
				if ra.AgentConnected(agentID) || rb.AgentConnected(agentID) {
					t.Fatal("AgentConnected before the agent connected")
				}
				a = startAgent(t, ctx, rb.Coordinator, agentID)
				a.sendNode(ctx, newNode(agentID, 1))
			}
			cl.awaitNode(ctx, agentID, 1)
			a.awaitNode(ctx, cl.id, 1)
			waitUntil(t, ctx, "both replicas see the agent", func() bool {
				return ra.AgentConnected(agentID) && rb.AgentConnected(agentID)
			})

			// Updates flow both ways.
			a.sendNode(ctx, newNode(agentID, 2))
			cl.sendNode(ctx, newNode(cl.id, 2))
			cl.awaitNode(ctx, agentID, 2)
			a.awaitNode(ctx, cl.id, 2)

			s := ra.Snapshot()
			if len(s.Agents) != 1 || s.Agents[0].Connected || s.Agents[0].Replica != rb.id || len(s.Agents[0].Clients) != 1 {
				t.Errorf("replica A's snapshot: %+v", s)
			}
			onlyNodes(t, cl, agentID)
			onlyNodes(t, a, cl.id)
		})
	}
}

// TestReplicasLeaving checks that a peer's counterparts on another replica
// hear how it left, and that the agent's return reintroduces them.
func TestReplicasLeaving(t *testing.T) {
	for _, tt := range leavingCases {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			bus := newMemBus(t)
			ra, rb := bus.join(t, nil), bus.join(t, nil)
			agentID := uuid.New()
			a := startAgent(t, ctx, rb.Coordinator, agentID)
			cl := startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
			local := startClient(t, ctx, rb.Coordinator, uuid.New(), agentID)
			a.sendNode(ctx, newNode(agentID, 1))
			cl.sendNode(ctx, newNode(cl.id, 1))
			cl.awaitNode(ctx, agentID, 1)
			local.awaitNode(ctx, agentID, 1)
			a.awaitNode(ctx, cl.id, 1)

			leaver, watchers := cl, []*peer{a}
			if tt.agentLeft {
				leaver, watchers = a, []*peer{cl, local}
			}
			if tt.graceful {
				leaver.send(ctx, &tether.CoordinateRequest{Disconnect: true})
			} else {
				leaver.s.breakConn()
			}
			leaver.wait(ctx)
			for _, w := range watchers {
				if u := w.awaitKind(ctx, leaver.id, tt.want); u.Reason == "" {
					t.Errorf("%s update has no reason", tt.want)
				}
			}
			if !tt.agentLeft {
				waitUntil(t, ctx, "replica B forgets the client", func() bool {
					s := rb.Snapshot()
					return len(s.Agents) == 1 && len(s.Agents[0].RemoteClients) == 0
				})
				return
			}
			waitUntil(t, ctx, "replica A sees the agent gone", func() bool { return !ra.AgentConnected(agentID) })
			back := startAgent(t, ctx, rb.Coordinator, agentID)
			back.awaitNode(ctx, cl.id, 1)
			back.sendNode(ctx, newNode(agentID, 2))
			cl.awaitNode(ctx, agentID, 2)
			local.awaitNode(ctx, agentID, 2)
		})
	}
}

// TestReplicasAgentMoves moves an agent's stream from replica B to replica
// A: B's stream ends with ErrReplaced, and every client, on any replica,
// ends up with the new node without hearing that the agent left.
func TestReplicasAgentMoves(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	ra, rb, rc := bus.join(t, nil), bus.join(t, nil), bus.join(t, nil)
	agentID := uuid.New()
	old := startAgent(t, ctx, rb.Coordinator, agentID)
	clients := []*peer{
		startClient(t, ctx, ra.Coordinator, uuid.New(), agentID),
		startClient(t, ctx, rb.Coordinator, uuid.New(), agentID),
		startClient(t, ctx, rc.Coordinator, uuid.New(), agentID),
	}
	old.sendNode(ctx, newNode(agentID, 1))
	for _, cl := range clients {
		cl.sendNode(ctx, newNode(cl.id, 1))
		cl.awaitNode(ctx, agentID, 1)
		old.awaitNode(ctx, cl.id, 1)
	}

	// Hellos from two replicas are not ordered: the replicas must have
	// heard of the old stream before the new one starts, or each would
	// take the other's for the newer one (see the package comment).
	waitUntil(t, ctx, "the bus is idle", bus.delivered)
	fresh := startAgent(t, ctx, ra.Coordinator, agentID)
	if err := old.wait(ctx); !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("the stream on B ended with %v, want ErrReplaced", err)
	}
	for _, cl := range clients {
		fresh.awaitNode(ctx, cl.id, 1)
	}
	fresh.sendNode(ctx, newNode(agentID, 2))
	for _, cl := range clients {
		cl.awaitNode(ctx, agentID, 2)
		onlyNodes(t, cl, agentID)
	}
	// Updates keep flowing to the agent's new replica.
	for _, cl := range clients {
		cl.sendNode(ctx, newNode(cl.id, 3))
		fresh.awaitNode(ctx, cl.id, 3)
	}
	for _, r := range []replica{ra, rb, rc} {
		if !r.AgentConnected(agentID) {
			t.Errorf("replica %s: agent not connected after the move", r.id)
		}
	}
	waitUntil(t, ctx, "replica C knows the agent is on A", func() bool {
		s := rc.Snapshot()
		return len(s.Agents) == 1 && s.Agents[0].Replica == ra.id
	})
}

// TestReplicasClientMoves reconnects a client, with the same ID, to another
// replica: the old stream ends with ErrReplaced and the agent only sees the
// client's new node.
func TestReplicasClientMoves(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	ra, rb, rc := bus.join(t, nil), bus.join(t, nil), bus.join(t, nil)
	agentID, clientID := uuid.New(), uuid.New()
	a := startAgent(t, ctx, ra.Coordinator, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	old := startClient(t, ctx, rb.Coordinator, clientID, agentID)
	old.sendNode(ctx, newNode(clientID, 1))
	old.awaitNode(ctx, agentID, 1)
	a.awaitNode(ctx, clientID, 1)

	// As in TestReplicasAgentMoves.
	waitUntil(t, ctx, "the bus is idle", bus.delivered)
	fresh := startClient(t, ctx, rc.Coordinator, clientID, agentID)
	if err := old.wait(ctx); !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("the stream on B ended with %v, want ErrReplaced", err)
	}
	fresh.awaitNode(ctx, agentID, 1)
	fresh.sendNode(ctx, newNode(clientID, 2))
	a.awaitNode(ctx, clientID, 2)
	onlyNodes(t, a, clientID)
	// C's replica forgot the client's stream on B, which it had heard of.
	if s := rc.Snapshot(); len(s.Agents) != 1 || len(s.Agents[0].Clients) != 1 || len(s.Agents[0].RemoteClients) != 0 {
		t.Errorf("replica C's snapshot: %+v", s)
	}

	fresh.send(ctx, &tether.CoordinateRequest{Disconnect: true})
	a.awaitKind(ctx, clientID, tether.PeerDisconnected)
}

// TestReplicaGone kills a replica: the peers it held count as lost.
func TestReplicaGone(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	ra, rb := bus.join(t, nil), bus.join(t, nil)
	// Agent X on B with a client on A; agent Y on A with a client on B.
	x, y := uuid.New(), uuid.New()
	ax := startAgent(t, ctx, rb.Coordinator, x)
	ay := startAgent(t, ctx, ra.Coordinator, y)
	cx := startClient(t, ctx, ra.Coordinator, uuid.New(), x)
	cy := startClient(t, ctx, rb.Coordinator, uuid.New(), y)
	for _, p := range []*peer{ax, ay, cx, cy} {
		p.sendNode(ctx, newNode(p.id, 1))
	}
	cx.awaitNode(ctx, x, 1)
	ay.awaitNode(ctx, cy.id, 1)
	ax.awaitNode(ctx, cx.id, 1)
	cy.awaitNode(ctx, y, 1)

	// B dies: it publishes nothing more, and what it did publish has
	// arrived by the time its heartbeat is missed.
	bus.cutOff(rb.id)
	waitUntil(t, ctx, "B's last events are delivered", bus.delivered)
	ra.ReplicaGone(rb.id)
	cx.awaitKind(ctx, x, tether.PeerLost)
	ay.awaitKind(ctx, cy.id, tether.PeerLost)
	if ra.AgentConnected(x) {
		t.Error("A: agent of the dead replica still connected")
	}
	if !ra.AgentConnected(y) {
		t.Error("A: its own agent is no longer connected")
	}
	ra.ReplicaGone(ra.id) // its own ID: ignored
	if !ra.AgentConnected(y) {
		t.Error("A: ReplicaGone of its own ID dropped its agent")
	}
}

// TestReplicasEdges runs two agents on two replicas with clients spread
// over three, and checks that nodes travel along edges and nowhere else.
func TestReplicasEdges(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	rs := []replica{bus.join(t, nil), bus.join(t, nil), bus.join(t, nil)}
	x, y := uuid.New(), uuid.New()
	ax := startAgent(t, ctx, rs[0].Coordinator, x)
	ay := startAgent(t, ctx, rs[1].Coordinator, y)
	var cxs, cys []*peer
	for _, r := range rs {
		cxs = append(cxs, startClient(t, ctx, r.Coordinator, uuid.New(), x))
		cys = append(cys, startClient(t, ctx, r.Coordinator, uuid.New(), y))
	}
	all := slices.Concat([]*peer{ax, ay}, cxs, cys)
	for round := 1; round <= 2; round++ {
		for _, p := range all {
			p.sendNode(ctx, newNode(p.id, round))
		}
	}
	allowed := map[*peer][]uuid.UUID{}
	for _, cl := range cxs {
		cl.awaitNode(ctx, x, 2)
		ax.awaitNode(ctx, cl.id, 2)
		allowed[cl] = []uuid.UUID{x}
		allowed[ax] = append(allowed[ax], cl.id)
	}
	for _, cl := range cys {
		cl.awaitNode(ctx, y, 2)
		ay.awaitNode(ctx, cl.id, 2)
		allowed[cl] = []uuid.UUID{y}
		allowed[ay] = append(allowed[ay], cl.id)
	}
	for p, want := range allowed {
		for _, id := range p.heard() {
			if !slices.Contains(want, id) {
				t.Errorf("peer %s heard about %s, which is not its counterpart", p.id, id)
			}
		}
	}
}

// TestReplicaStartsLate starts a replica after the other one published a
// peer's node: the hello of the counterpart on the new replica makes the old
// one repeat it.
func TestReplicaStartsLate(t *testing.T) {
	for _, agentFirst := range []bool{true, false} {
		name := "client's replica starts late"
		if !agentFirst {
			name = "agent's replica starts late"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			bus := newMemBus(t)
			early := bus.join(t, nil)
			agentID, clientID := uuid.New(), uuid.New()
			var first *peer
			if agentFirst {
				first = startAgent(t, ctx, early.Coordinator, agentID)
			} else {
				first = startClient(t, ctx, early.Coordinator, clientID, agentID)
			}
			first.sendNode(ctx, newNode(first.id, 1))
			waitUntil(t, ctx, "the hello and node are published", func() bool { return bus.publishedBy(early.id) >= 2 })

			late := bus.join(t, nil)
			var second *peer
			if agentFirst {
				second = startClient(t, ctx, late.Coordinator, clientID, agentID)
			} else {
				second = startAgent(t, ctx, late.Coordinator, agentID)
			}
			second.awaitNode(ctx, first.id, 1)
			second.sendNode(ctx, newNode(second.id, 1))
			first.awaitNode(ctx, second.id, 1)
			if !late.AgentConnected(agentID) || !early.AgentConnected(agentID) {
				t.Error("a replica does not see the agent")
			}
		})
	}
}

// TestReplicasSlowBus blocks one replica's Publish: its local peers carry
// on, its outbox stays small, and the other replicas catch up once the bus
// moves again.
func TestReplicasSlowBus(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	open := make(chan struct{})
	ra := bus.join(t, func(next coordinator.Bus) coordinator.Bus { return gatedBus{next: next, open: open} })
	rb := bus.join(t, nil)
	agentID := uuid.New()
	a := startAgent(t, ctx, ra.Coordinator, agentID)
	local := startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
	remote := startClient(t, ctx, rb.Coordinator, uuid.New(), agentID)
	// Events into A still flow while A cannot publish.
	remote.sendNode(ctx, newNode(remote.id, 1))
	a.awaitNode(ctx, remote.id, 1)

	const rounds = 100
	for r := 1; r <= rounds; r++ {
		a.sendNode(ctx, newNode(agentID, r))
		local.sendNode(ctx, newNode(local.id, r))
	}
	local.awaitNode(ctx, agentID, rounds)
	a.awaitNode(ctx, local.id, rounds)
	// Pending: a few hellos and one node per peer, not 2*rounds events.
	if n := ra.Snapshot().Outbox; n > 6 {
		t.Errorf("outbox holds %d events after %d node updates, want them coalesced", n, 2*rounds)
	}
	if rb.AgentConnected(agentID) {
		t.Error("B sees the agent before A could publish")
	}

	close(open)
	remote.awaitNode(ctx, agentID, rounds)
	waitUntil(t, ctx, "A's outbox drains", func() bool { return ra.Snapshot().Outbox == 0 })
}

// TestCloseWithBlockedBus checks that Close returns while a Publish is
// blocked, and that serving goes on locally.
func TestCloseWithBlockedBus(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	never := make(chan struct{})
	ra := bus.join(t, func(next coordinator.Bus) coordinator.Bus { return gatedBus{next: next, open: never} })
	agentID := uuid.New()
	a := startAgent(t, ctx, ra.Coordinator, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	cl := startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
	cl.awaitNode(ctx, agentID, 1)

	closed := make(chan struct{})
	go func() {
		ra.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close did not return while Publish was blocked")
	}
	a.sendNode(ctx, newNode(agentID, 2))
	cl.awaitNode(ctx, agentID, 2)
	ra.Close() // again: a no-op
	coordinator.New(coordinator.Options{}).Close()
}

// TestHandleEventIgnores feeds HandleEvent events it must not act on: its
// own, and malformed ones.
func TestHandleEventIgnores(t *testing.T) {
	ctx := testContext(t)
	self, other := uuid.New(), uuid.New()
	c := coordinator.New(coordinator.Options{Replica: self})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	waitUntil(t, ctx, "agent connected", func() bool { return c.AgentConnected(agentID) })

	bad := uuid.New()
	for _, ev := range []coordinator.Event{
		{Kind: coordinator.EventClientNode, Replica: self, AgentID: agentID, ClientID: bad, Node: newNode(bad, 1)},
		{Kind: coordinator.EventClientNode, Replica: uuid.Nil, AgentID: agentID, ClientID: bad, Node: newNode(bad, 1)},
		{Kind: coordinator.EventClientNode, Replica: other, AgentID: agentID, ClientID: bad, Node: newNode(uuid.New(), 1)},
		{Kind: coordinator.EventClientNode, Replica: other, AgentID: agentID, ClientID: bad},
		{Kind: "client_teleported", Replica: other, AgentID: agentID, ClientID: bad, Node: newNode(bad, 1)},
		{Kind: coordinator.EventAgentHello, Replica: self, AgentID: agentID},
	} {
		c.HandleEvent(ev)
	}
	good := uuid.New()
	c.HandleEvent(coordinator.Event{Kind: coordinator.EventClientNode, Replica: other, AgentID: agentID, ClientID: good, Node: newNode(good, 1)})
	a.awaitNode(ctx, good, 1)
	if h := a.heard(); !slices.Equal(h, []uuid.UUID{good}) {
		t.Errorf("agent heard about %v, want only %s", h, good)
	}
	if !c.AgentConnected(agentID) {
		t.Error("its own agent_hello replaced the agent's stream")
	}
}

// TestStaleRemoteEvents feeds a coordinator the events of a peer that moved
// from replica R1 to R2 while R1 was still reporting on its old stream (the
// two replicas' events are not ordered): R1's late reports are ignored.
func TestStaleRemoteEvents(t *testing.T) {
	r1, r2 := uuid.New(), uuid.New()
	tests := []struct {
		name   string
		agent  bool // the agent moves, else its client
		events func(agentID, clientID uuid.UUID) []coordinator.Event
	}{
		{name: "agent", agent: true, events: func(x, _ uuid.UUID) []coordinator.Event {
			return []coordinator.Event{
				{Kind: coordinator.EventAgentHello, Replica: r1, AgentID: x},
				{Kind: coordinator.EventAgentNode, Replica: r1, AgentID: x, Node: newNode(x, 1)},
				{Kind: coordinator.EventAgentHello, Replica: r2, AgentID: x},
				{Kind: coordinator.EventAgentNode, Replica: r1, AgentID: x, Node: newNode(x, 3)},
				{Kind: coordinator.EventAgentGone, Replica: r1, AgentID: x},
				{Kind: coordinator.EventAgentNode, Replica: r2, AgentID: x, Node: newNode(x, 4)},
			}
		}},
		{name: "client", events: func(x, c uuid.UUID) []coordinator.Event {
			return []coordinator.Event{
				{Kind: coordinator.EventClientHello, Replica: r1, AgentID: x, ClientID: c},
				{Kind: coordinator.EventClientNode, Replica: r1, AgentID: x, ClientID: c, Node: newNode(c, 1)},
				{Kind: coordinator.EventClientHello, Replica: r2, AgentID: x, ClientID: c},
				{Kind: coordinator.EventClientNode, Replica: r1, AgentID: x, ClientID: c, Node: newNode(c, 3)},
				{Kind: coordinator.EventClientGone, Replica: r1, AgentID: x, ClientID: c},
				{Kind: coordinator.EventClientNode, Replica: r2, AgentID: x, ClientID: c, Node: newNode(c, 4)},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			c := coordinator.New(coordinator.Options{Replica: uuid.New()})
			agentID, clientID := uuid.New(), uuid.New()
			// The local peer watches the one that moves.
			var watcher *peer
			moved := agentID
			if tt.agent {
				watcher = startClient(t, ctx, c, clientID, agentID)
			} else {
				watcher, moved = startAgent(t, ctx, c, agentID), clientID
			}
			waitUntil(t, ctx, "the watcher is connected", func() bool {
				s := c.Snapshot()
				return s.Clients+s.AgentsConnected == 1
			})
			evs := tt.events(agentID, clientID)
			for _, ev := range evs[:len(evs)-1] {
				c.HandleEvent(ev)
			}
			// The watcher's queue coalesces, so check what the
			// coordinator holds before R2's node makes the rest moot.
			s := c.Snapshot()
			if len(s.Agents) != 1 {
				t.Fatalf("snapshot has %d agents, want 1", len(s.Agents))
			}
			holder, node := s.Agents[0].Replica, s.Agents[0].Node
			if !tt.agent {
				if len(s.Agents[0].RemoteClients) != 1 {
					t.Fatalf("snapshot has %d remote clients, want 1", len(s.Agents[0].RemoteClients))
				}
				holder, node = s.Agents[0].RemoteClients[0].Replica, s.Agents[0].RemoteClients[0].Node
			}
			if holder != r2 || node == nil || node.PreferredDERP != 1 {
				t.Errorf("after R1's stale events: held by %s (R1 %s, R2 %s) with node %+v, want R2 and node 1", holder, r1, r2, node)
			}
			c.HandleEvent(evs[len(evs)-1])
			watcher.awaitNode(ctx, moved, 4)
			onlyNodes(t, watcher, moved)
			for _, u := range watcher.updates() {
				if u.Node != nil && u.Node.PreferredDERP == 3 {
					t.Error("a stale node was forwarded")
				}
			}
		})
	}
}

// TestAgentGetsRemoteClients checks that an agent connecting here gets the
// nodes that remote clients published earlier, without anyone repeating
// them.
func TestAgentGetsRemoteClients(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{Replica: uuid.New()})
	r, agentID, clientID := uuid.New(), uuid.New(), uuid.New()
	c.HandleEvent(coordinator.Event{Kind: coordinator.EventClientHello, Replica: r, AgentID: agentID, ClientID: clientID})
	c.HandleEvent(coordinator.Event{Kind: coordinator.EventClientNode, Replica: r, AgentID: agentID, ClientID: clientID, Node: newNode(clientID, 1)})
	if c.AgentConnected(agentID) {
		t.Error("a client's events made its agent connected")
	}
	a := startAgent(t, ctx, c, agentID)
	a.awaitNode(ctx, clientID, 1)
	c.HandleEvent(coordinator.Event{Kind: coordinator.EventClientGone, Replica: r, AgentID: agentID, ClientID: clientID, Graceful: true})
	a.awaitKind(ctx, clientID, tether.PeerDisconnected)
}

// TestReplicaResync: a replica that missed events (its bus connection
// broke) calls Resync, and its clients end up with the nodes they missed,
// of an agent they knew and of one that connected meanwhile.
func TestReplicaResync(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	ra, rb := bus.join(t, nil), bus.join(t, nil)
	agentID, otherID := uuid.New(), uuid.New()
	a := startAgent(t, ctx, rb.Coordinator, agentID)
	a.sendNode(ctx, newNode(agentID, 1))
	cl := startClient(t, ctx, ra.Coordinator, uuid.New(), agentID)
	cl.sendNode(ctx, newNode(cl.id, 1))
	cl.awaitNode(ctx, agentID, 1)
	a.awaitNode(ctx, cl.id, 1)

	// A misses the agent's new node and another agent's arrival.
	bus.setDeaf(ra.id, true)
	a.sendNode(ctx, newNode(agentID, 2))
	other := startAgent(t, ctx, rb.Coordinator, otherID)
	other.sendNode(ctx, newNode(otherID, 1))
	waitUntil(t, ctx, "B's events are out", bus.delivered)
	if ra.AgentConnected(otherID) {
		t.Fatal("a deaf replica learned of the other agent")
	}

	bus.setDeaf(ra.id, false)
	ra.Resync()
	cl.awaitNode(ctx, agentID, 2)
	waitUntil(t, ctx, "A knows the other agent again", func() bool { return ra.AgentConnected(otherID) })
	clOther := startClient(t, ctx, ra.Coordinator, uuid.New(), otherID)
	clOther.awaitNode(ctx, otherID, 1)
	// B's agent never heard that its client left.
	onlyNodes(t, a, cl.id)
}
