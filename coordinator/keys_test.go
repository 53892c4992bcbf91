package coordinator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

// keysAre checks which of keys c knows, and that its index matches its
// graph.
func keysAre(t *testing.T, c *coordinator.Coordinator, known map[key.NodePublic]bool) {
	t.Helper()
	for k, want := range known {
		if got := c.KnowsNodeKey(k); got != want {
			t.Errorf("KnowsNodeKey(%s) = %v, want %v", k.ShortString(), got, want)
		}
	}
	if err := c.CheckNodeKeys(); err != nil {
		t.Error(err)
	}
}

// awaitKeys waits until c knows exactly the keys marked true in want (of
// those listed).
func awaitKeys(t *testing.T, ctx context.Context, c *coordinator.Coordinator, what string, want map[key.NodePublic]bool) {
	t.Helper()
	waitUntil(t, ctx, what, func() bool {
		for k, w := range want {
			if c.KnowsNodeKey(k) != w {
				return false
			}
		}
		return true
	})
	if err := c.CheckNodeKeys(); err != nil {
		t.Error(err)
	}
}

// TestNodeKeys follows the keys one replica knows through the life of an
// agent and its clients: a key is known from the node that carries it
// until the node is replaced by one with another key or its peer leaves.
func TestNodeKeys(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	cl := startClient(t, ctx, c, uuid.New(), agentID)
	other := startClient(t, ctx, c, uuid.New(), agentID)
	an1, cn, on := newNode(agentID, 1), newNode(cl.id, 1), newNode(other.id, 1)
	keysAre(t, c, map[key.NodePublic]bool{an1.Key: false, cn.Key: false})

	a.sendNode(ctx, an1)
	cl.sendNode(ctx, cn)
	other.sendNode(ctx, on)
	a.awaitNode(ctx, cl.id, 1)
	a.awaitNode(ctx, other.id, 1)
	keysAre(t, c, map[key.NodePublic]bool{an1.Key: true, cn.Key: true, on.Key: true})

	// A new node with the same key changes nothing; one with a new key
	// (a restarted tunnel) replaces the old key.
	same := newNode(agentID, 2)
	same.Key = an1.Key
	a.sendNode(ctx, same)
	cl.awaitNode(ctx, agentID, 2)
	keysAre(t, c, map[key.NodePublic]bool{an1.Key: true})
	an3 := newNode(agentID, 3)
	a.sendNode(ctx, an3)
	cl.awaitNode(ctx, agentID, 3)
	keysAre(t, c, map[key.NodePublic]bool{an1.Key: false, an3.Key: true})

	// A replaced stream's node stays until the new stream sends its own.
	fresh := startAgent(t, ctx, c, agentID)
	if err := a.wait(ctx); !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("old stream ended with %v, want ErrReplaced", err)
	}
	fresh.awaitNode(ctx, cl.id, 1)
	keysAre(t, c, map[key.NodePublic]bool{an3.Key: true})
	an4 := newNode(agentID, 4)
	fresh.sendNode(ctx, an4)
	cl.awaitNode(ctx, agentID, 4)
	keysAre(t, c, map[key.NodePublic]bool{an3.Key: false, an4.Key: true})

	// Leaving, lost or on purpose, forgets the key.
	cl.s.breakConn()
	fresh.awaitKind(ctx, cl.id, tether.PeerLost)
	keysAre(t, c, map[key.NodePublic]bool{cn.Key: false, on.Key: true, an4.Key: true})
	other.send(ctx, &tether.CoordinateRequest{Disconnect: true})
	fresh.awaitKind(ctx, other.id, tether.PeerDisconnected)
	keysAre(t, c, map[key.NodePublic]bool{on.Key: false, an4.Key: true})
	fresh.send(ctx, &tether.CoordinateRequest{Disconnect: true})
	fresh.wait(ctx)
	keysAre(t, c, map[key.NodePublic]bool{an4.Key: false})
}

// TestNodeKeysSharedKey: two peers claiming one key keep it known until
// both have dropped it.
func TestNodeKeysSharedKey(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	cl := startClient(t, ctx, c, uuid.New(), agentID)
	an, cn := newNode(agentID, 1), newNode(cl.id, 1)
	cn.Key = an.Key
	a.sendNode(ctx, an)
	cl.sendNode(ctx, cn)
	a.awaitNode(ctx, cl.id, 1)
	cl.s.breakConn()
	a.awaitKind(ctx, cl.id, tether.PeerLost)
	keysAre(t, c, map[key.NodePublic]bool{an.Key: true})
	a.s.breakConn()
	a.wait(ctx)
	keysAre(t, c, map[key.NodePublic]bool{an.Key: false})
}

// TestNodeKeysAcrossReplicas: every replica knows the keys of the peers
// held by the others, and forgets them when they leave, move away with a
// new key, or their replica dies.
func TestNodeKeysAcrossReplicas(t *testing.T) {
	ctx := testContext(t)
	bus := newMemBus(t)
	ra, rb, rc := bus.join(t, nil), bus.join(t, nil), bus.join(t, nil)
	agentID, clientID := uuid.New(), uuid.New()
	a := startAgent(t, ctx, rb.Coordinator, agentID)
	cl := startClient(t, ctx, ra.Coordinator, clientID, agentID)
	an, cn := newNode(agentID, 1), newNode(clientID, 1)
	a.sendNode(ctx, an)
	cl.sendNode(ctx, cn)
	a.awaitNode(ctx, clientID, 1)
	for _, r := range []replica{ra, rb, rc} {
		awaitKeys(t, ctx, r.Coordinator, "every replica knows both keys", map[key.NodePublic]bool{an.Key: true, cn.Key: true})
	}

	// The client moves to C with a new tunnel key: the old key is
	// forgotten everywhere, the new one known everywhere.
	waitUntil(t, ctx, "the bus is idle", bus.delivered)
	moved := startClient(t, ctx, rc.Coordinator, clientID, agentID)
	cl.wait(ctx)
	cn2 := newNode(clientID, 2)
	moved.sendNode(ctx, cn2)
	a.awaitNode(ctx, clientID, 2)
	for _, r := range []replica{ra, rb, rc} {
		awaitKeys(t, ctx, r.Coordinator, "the moved client's new key replaces its old one", map[key.NodePublic]bool{cn.Key: false, cn2.Key: true})
	}

	// B dies: its agent's key is forgotten by the others.
	bus.cutOff(rb.id)
	waitUntil(t, ctx, "B's last events are delivered", bus.delivered)
	ra.ReplicaGone(rb.id)
	rc.ReplicaGone(rb.id)
	for _, r := range []replica{ra, rc} {
		keysAre(t, r.Coordinator, map[key.NodePublic]bool{an.Key: false, cn2.Key: true})
	}

	// Resync forgets what other replicas held, until they re-publish.
	ra.Resync()
	keysAre(t, ra.Coordinator, map[key.NodePublic]bool{cn2.Key: false})
	awaitKeys(t, ctx, ra.Coordinator, "C re-publishes its client", map[key.NodePublic]bool{cn2.Key: true})
}

// TestAwaitNodeKey: a caller waiting for a key returns as soon as a node
// carries it, or with false when its context ends, leaving nothing behind.
func TestAwaitNodeKey(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{})
	agentID := uuid.New()
	a := startAgent(t, ctx, c, agentID)
	an := newNode(agentID, 1)

	// Several callers wait for the key; one gives up meanwhile.
	const waiters = 3
	got := make(chan bool, waiters)
	for range waiters {
		go func() { got <- c.AwaitNodeKey(ctx, an.Key) }()
	}
	quitter, quit := context.WithCancel(ctx)
	gaveUp := make(chan bool, 1)
	go func() { gaveUp <- c.AwaitNodeKey(quitter, an.Key) }()
	waitUntil(t, ctx, "the callers wait", func() bool { return c.KeyWaiters() == 1 })
	quit()
	if <-gaveUp {
		t.Error("AwaitNodeKey with a cancelled context = true before the key was known")
	}
	select {
	case <-got:
		t.Fatal("AwaitNodeKey returned before the key was known")
	default:
	}
	a.sendNode(ctx, an)
	for range waiters {
		select {
		case ok := <-got:
			if !ok {
				t.Error("AwaitNodeKey = false for a key that became known")
			}
		case <-ctx.Done():
			t.Fatal("AwaitNodeKey did not return when the key became known")
		}
	}
	if n := c.KeyWaiters(); n != 0 {
		t.Errorf("%d keys still have waiters", n)
	}
	if !c.AwaitNodeKey(ctx, an.Key) {
		t.Error("AwaitNodeKey of a known key = false")
	}

	// A key nobody has: false when the deadline passes, and no waiter left.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if c.AwaitNodeKey(short, key.NewNode().Public()) {
		t.Error("AwaitNodeKey of an unknown key = true")
	}
	if n := c.KeyWaiters(); n != 0 {
		t.Errorf("%d keys still have waiters after a timeout", n)
	}
}
