package coordinator

import (
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
)

// queue holds what is waiting to be sent to one peer. It coalesces: a new
// update about a counterpart replaces a pending one in place (keeping its
// position, so a busy counterpart cannot starve the others), and a new DERP
// map replaces a pending one. Its length is thus bounded by the peer's
// number of counterparts, however slowly the peer reads.
//
// It is not a mailbox.Mailbox, though it wakes its reader the same way: a
// mailbox keeps one latest value, and a queue keeps the latest of each of
// many (one per counterpart, in order), which its sender takes in batches.
type queue struct {
	// wake has room for one signal: pushers never block, and the sender
	// drains everything pending each time it wakes.
	wake chan struct{}

	mu      sync.Mutex
	updates []tether.PeerUpdate // updates[head:] are pending, oldest first; guarded by mu
	head    int                 // guarded by mu
	index   map[uuid.UUID]int   // peer ID → position in updates; guarded by mu
	derpMap *tailcfg.DERPMap    // guarded by mu
	closed  bool                // guarded by mu

	coalesced *atomic.Uint64 // counts updates replaced before they were sent
}

// init readies q; coalesced counts the updates it replaces.
func (q *queue) init(coalesced *atomic.Uint64) {
	q.coalesced = coalesced
	q.wake = make(chan struct{}, 1)
	q.index = make(map[uuid.UUID]int)
}

func (q *queue) push(u tether.PeerUpdate) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if i, ok := q.index[u.ID]; ok {
		q.updates[i] = u
		q.coalesced.Add(1)
		return
	}
	q.index[u.ID] = len(q.updates)
	q.updates = append(q.updates, u)
	q.signalLocked()
}

func (q *queue) setDERPMap(m *tailcfg.DERPMap) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.derpMap = m
	q.signalLocked()
}

func (q *queue) signalLocked() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take removes and returns up to max pending updates, with the pending DERP
// map if any. It reports false when nothing is pending.
func (q *queue) take(max int) (*tether.CoordinateResponse, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	pending := q.updates[q.head:]
	if len(pending) == 0 && q.derpMap == nil {
		return nil, false
	}
	resp := &tether.CoordinateResponse{DERPMap: q.derpMap}
	q.derpMap = nil
	n := min(max, len(pending))
	if n == 0 {
		return resp, true
	}
	resp.Peers = make([]tether.PeerUpdate, n)
	copy(resp.Peers, pending)
	for _, u := range resp.Peers {
		delete(q.index, u.ID)
	}
	clear(pending[:n]) // drop the nodes for the garbage collector
	q.head += n
	switch rest := q.updates[q.head:]; {
	case len(rest) == 0:
		q.updates, q.head = q.updates[:0], 0
	case q.head > len(rest):
		// Compact once the sent prefix outgrows what is left, so
		// positions stay small at an amortized O(1) per update.
		m := copy(q.updates, rest)
		clear(q.updates[m:])
		q.updates, q.head = q.updates[:m], 0
		for i, u := range q.updates {
			q.index[u.ID] = i
		}
	}
	return resp, true
}

// len returns the number of pending updates, for snapshots.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.updates) - q.head
}

// close drops what is pending and makes later pushes no-ops.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.updates, q.head, q.index, q.derpMap = nil, 0, nil, nil
}
