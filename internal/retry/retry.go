// Package retry spaces out the attempts of the loops that reconnect to
// something that went away: the coordination client to the coordinator,
// the agent to the server, a replica to PostgreSQL. They share one
// schedule, exponential backoff with jitter, so that they behave alike
// and a change to it is made once.
//
// tailscale.com/util/backoff (linked already) is not used because these
// loops need what it does not offer: it sleeps by itself without saying
// for how long, while the loops log the wait and the coordination client
// stretches it when the server asks for more (coordclient.RetryAfter); it
// has no floor (its first wait is 5–15 ms, where a refused connection
// retried at once only adds load to a server that is starting); and its
// jitter reaches half again beyond its ceiling.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with jitter. Each Next doubles the step,
// from Min up to Max, and draws the wait from the step's upper half, so
// that peers that lost a server together do not all return together, and
// none waits less than half the step. Set Min and Max (0 < Min <= Max);
// the zero value is not usable. A Backoff is used by one goroutine.
type Backoff struct {
	Min, Max time.Duration
	step     time.Duration
}

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	if b.step == 0 {
		b.step = b.Min
	} else {
		b.step = min(2*b.step, b.Max)
	}
	return b.step/2 + rand.N(b.step/2+1)
}

// Reset starts the schedule again from Min, after a success.
func (b *Backoff) Reset() { b.step = 0 }

// Sleep waits for d, or until ctx is done. It reports whether it waited
// all of d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
