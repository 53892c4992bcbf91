package coordclient

import (
	"testing"
	"time"
)

func TestBackoffSteps(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, step := range steps {
			step *= time.Millisecond
			for range 50 {
				// Draw many times at the same step to see the jitter's range.
				saved := b
				d := b.next()
				if d < step/2 || d > step {
					t.Fatalf("round %d, wait %d = %v, want within [%v, %v]", round, i, d, step/2, step)
				}
				b = saved
			}
			b.next()
		}
		b.reset()
	}
}
