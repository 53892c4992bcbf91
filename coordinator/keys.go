package coordinator

import (
	"context"

	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
)

// The node keys the coordinator knows are the keys of the latest nodes of
// every peer it holds or hears of: agents and clients here, and those on
// other replicas. The built-in DERP relay serves only these keys (package
// relay asks KnowsNodeKey and AwaitNodeKey), so a peer's key stays
// known exactly as long as some replica holds a stream for it and its node
// has not been replaced by one with another key.

// keyIndex counts, for each node key, the nodes in the graph that carry it
// (two peers may claim one key; the key is known while either does), and
// wakes the callers waiting for a key to become known. Its methods are
// called with Coordinator.mu held.
type keyIndex struct {
	count   map[key.NodePublic]int
	waiters map[key.NodePublic]*keyWaiter
}

// keyWaiter is shared by every caller waiting for one key: ch is closed
// when the key becomes known; n counts the callers still waiting, so that
// the last one to give up removes it.
type keyWaiter struct {
	ch chan struct{}
	n  int
}

func (ix *keyIndex) init() {
	ix.count = make(map[key.NodePublic]int)
	ix.waiters = make(map[key.NodePublic]*keyWaiter)
}

// replaceLocked records that a node of the graph changed from old to new;
// either may be nil (a node appears or is forgotten).
func (ix *keyIndex) replaceLocked(old, new *tether.Node) {
	if old != nil && new != nil && old.Key == new.Key {
		return
	}
	if new != nil {
		ix.count[new.Key]++
		if ix.count[new.Key] == 1 {
			if w := ix.waiters[new.Key]; w != nil {
				close(w.ch)
				delete(ix.waiters, new.Key)
			}
		}
	}
	if old != nil {
		if ix.count[old.Key]--; ix.count[old.Key] <= 0 {
			delete(ix.count, old.Key)
		}
	}
}

func (ix *keyIndex) knownLocked(k key.NodePublic) bool { return ix.count[k] > 0 }

// KnowsNodeKey reports whether some peer of the deployment, connected here
// or to another replica, has k as its node key.
func (c *Coordinator) KnowsNodeKey(k key.NodePublic) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.g.keys.knownLocked(k)
}

// AwaitNodeKey waits until KnowsNodeKey(k) holds and returns true, or
// returns false once ctx is done. A peer's tunnel may dial the relay a
// moment before its node reaches the coordinator; this is how the relay
// waits for it instead of refusing it.
func (c *Coordinator) AwaitNodeKey(ctx context.Context, k key.NodePublic) bool {
	c.mu.Lock()
	if c.g.keys.knownLocked(k) {
		c.mu.Unlock()
		return true
	}
	w := c.g.keys.waiters[k]
	if w == nil {
		w = &keyWaiter{ch: make(chan struct{})}
		c.g.keys.waiters[k] = w
	}
	w.n++
	c.mu.Unlock()

	select {
	case <-w.ch:
		return true
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-w.ch:
		return true // known just now
	default:
	}
	if w.n--; w.n == 0 {
		delete(c.g.keys.waiters, k)
	}
	return false
}
