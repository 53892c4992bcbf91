// Package testwait is how tests wait for what other goroutines bring
// about: they poll a condition until it holds, or fail once the test's
// context ends, and never sleep for a fixed time. Only tests import it.
package testwait

import (
	"context"
	"testing"
	"time"
)

// Interval is how often Until polls: short beside what tests wait for (a
// round trip on loopback, another goroutine's next step), and long enough
// not to keep a loaded 2-core machine busy.
const Interval = 5 * time.Millisecond

// Until polls cond every Interval until it holds. If ctx ends first, it
// fails the test with "timed out waiting until " and what.
func Until(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}
