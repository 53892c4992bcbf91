// Package mailbox hands the latest state of something from writers that
// must never block (callbacks of the tunnel engine, say) to one reader that
// may fall behind (a goroutine writing to a socket). Only the newest value
// matters to such a reader: a node, a peer's whole state, "something
// changed". So a Mailbox keeps one value, which every Put replaces, and
// one pending wake-up: however many Puts come while the reader is busy,
// it wakes once and reads the newest value.
//
// It is the one copy of what used to be written out by hand beside each
// such pair (a mutex, a field and a channel with room for one signal).
// Where a reader must see every value, or the latest of each of many
// things (the coordinator's per-peer queue), this is not the tool.
package mailbox

import (
	"context"
	"sync"
)

// Mailbox holds the latest value put in it, for one reader. The zero value
// is an empty Mailbox, ready to use: Get returns the zero value of T until
// the first Put. A Mailbox must not be copied after first use.
//
// The reader loops: read with Get, act, then wait on Changed. A Put that
// lands between Get and the wait leaves its wake-up pending, so nothing is
// missed; a wake-up may also find the value it already read, which the
// reader must tolerate (compare with what it last acted on).
type Mailbox[T any] struct {
	mu   sync.Mutex
	v    T             // guarded by mu
	wake chan struct{} // room for one signal; made at first use, guarded by mu
}

// Put replaces the value and wakes the reader. It never blocks.
func (m *Mailbox[T]) Put(v T) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.v = v
	select {
	case m.wakeLocked() <- struct{}{}:
	default: // a wake-up is pending already; it will find v
	}
}

// Get returns the latest value.
func (m *Mailbox[T]) Get() T {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.v
}

// Changed returns the channel that receives once after one or more Puts.
// It is the same channel for the Mailbox's whole life, so that a reader
// may fetch it once; with two readers, each Put would wake only one.
func (m *Mailbox[T]) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wakeLocked()
}

func (m *Mailbox[T]) wakeLocked() chan struct{} {
	if m.wake == nil {
		m.wake = make(chan struct{}, 1)
	}
	return m.wake
}

// Next waits until m holds a value that is neither the zero value nor
// last, and returns it; or returns ctx's error once ctx is done. It is the
// reader's loop for the common case of acting on each new value (sending
// the latest node, say) with last the value it acted on before.
func Next[T comparable](ctx context.Context, m *Mailbox[T], last T) (T, error) {
	var zero T
	for {
		if v := m.Get(); v != zero && v != last {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-m.Changed():
		}
	}
}
