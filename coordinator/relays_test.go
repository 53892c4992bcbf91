package coordinator_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

func startRelay(t *testing.T, ctx context.Context, c *coordinator.Coordinator, id uuid.UUID) *peer {
	t.Helper()
	p := newPeer(t, id, 64)
	go func() { p.done <- c.ServeRelay(ctx, id, p.s) }()
	return p
}

// TestRelayEdges checks the edges of a UDP relay: it hears every agent and
// client with the agent each belongs to, they hear it marked as a relay,
// and nobody else hears of anybody new.
func TestRelayEdges(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentA, agentB := uuid.New(), uuid.New()
	a := startAgent(t, ctx, c, agentA)
	a1 := startClient(t, ctx, c, uuid.New(), agentA)
	a.sendNode(ctx, newNode(agentA, 1))
	a1.sendNode(ctx, newNode(a1.id, 1))
	a.awaitNode(ctx, a1.id, 1)

	// A relay that comes after them hears both at once; one that comes
	// before them (b, b1) as they arrive.
	r := startRelay(t, ctx, c, uuid.New())
	rn := newNode(r.id, 5)
	r.sendNode(ctx, rn)
	r.awaitNode(ctx, agentA, 1)
	r.awaitNode(ctx, a1.id, 1)
	b := startAgent(t, ctx, c, agentB)
	b1 := startClient(t, ctx, c, uuid.New(), agentB)
	b.sendNode(ctx, newNode(agentB, 2))
	b1.sendNode(ctx, newNode(b1.id, 2))
	r.awaitNode(ctx, agentB, 2)
	r.awaitNode(ctx, b1.id, 2)

	for _, p := range []*peer{a, a1, b, b1} {
		u := p.awaitKind(ctx, r.id, tether.PeerNode)
		if !u.Relay {
			t.Errorf("peer %s heard of the relay without Relay set", p.id)
		}
	}
	wantAgent := map[uuid.UUID]uuid.UUID{agentA: agentA, a1.id: agentA, agentB: agentB, b1.id: agentB}
	for _, u := range r.updates() {
		if u.Kind != tether.PeerNode {
			continue
		}
		if u.Agent != wantAgent[u.ID] {
			t.Errorf("relay heard of %s with agent %s, want %s", u.ID, u.Agent, wantAgent[u.ID])
		}
		if u.Relay {
			t.Errorf("relay heard of %s as a relay", u.ID)
		}
	}
	// The ordinary edges are unchanged: a client hears only its agent and
	// the relay.
	b1.awaitNode(ctx, agentB, 2)
	for _, id := range b1.heard() {
		if id != agentB && id != r.id {
			t.Errorf("client %s heard of %s", b1.id, id)
		}
	}

	// When a client leaves, the relay hears it; when the relay leaves,
	// everybody does.
	b1.s.breakConn()
	r.awaitKind(ctx, b1.id, tether.PeerLost)
	if err := c.CheckNodeKeys(); err != nil {
		t.Errorf("with a relay: %v", err)
	}
	r.s.breakConn()
	for _, p := range []*peer{a, a1, b} {
		p.awaitKind(ctx, r.id, tether.PeerLost)
	}
	if err := c.CheckNodeKeys(); err != nil {
		t.Errorf("after the relay left: %v", err)
	}
	if c.KnowsNodeKey(rn.Key) {
		t.Error("the coordinator still knows the key of a relay that left")
	}
}

// TestRelayOnReplicaThatStartedEarlier: a replica that starts after
// another replica's UDP relay published its node still introduces that
// relay to its agents and clients (and them to it), whichever of the pair
// connects there.
func TestRelayOnReplicaThatStartedEarlier(t *testing.T) {
	for _, agentLate := range []bool{true, false} {
		name := "the agent on the late replica"
		if !agentLate {
			name = "the client on the late replica"
		}
		t.Run(name, func(t *testing.T) {
			ctx := testContext(t)
			bus := newMemBus(t)
			early := bus.join(t, nil)
			r := startRelay(t, ctx, early.Coordinator, uuid.New())
			r.sendNode(ctx, newNode(r.id, 7))
			waitUntil(t, ctx, "the relay's hello and node are published", func() bool { return bus.publishedBy(early.id) >= 2 })

			late := bus.join(t, nil)
			agentID, clientID := uuid.New(), uuid.New()
			lateC, earlyC := late.Coordinator, early.Coordinator
			if !agentLate {
				lateC, earlyC = earlyC, lateC
			}
			a := startAgent(t, ctx, lateC, agentID)
			a.sendNode(ctx, newNode(agentID, 1))
			cl := startClient(t, ctx, earlyC, clientID, agentID)
			cl.sendNode(ctx, newNode(clientID, 2))
			if !agentLate {
				// The client is the late replica's peer.
				a, cl = cl, a
			}
			// The late replica's peer hears the relay; the relay hears
			// both.
			a.awaitNode(ctx, r.id, 7)
			r.awaitNode(ctx, agentID, 1)
			r.awaitNode(ctx, clientID, 2)
			if u := a.awaitKind(ctx, r.id, tether.PeerNode); !u.Relay {
				t.Errorf("%s heard of the relay without Relay set", a.id)
			}
		})
	}
}
