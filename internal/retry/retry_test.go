package retry

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBackoffSteps checks the schedule: the step doubles from Min to Max,
// each wait within the step's upper half, and Reset starts it over.
func TestBackoffSteps(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, step := range steps {
			step *= time.Millisecond
			for range 50 {
				// Draw many times at the same step to see the jitter's range.
				saved := b
				d := b.Next()
				if d < step/2 || d > step {
					t.Fatalf("round %d, wait %d = %v, want within [%v, %v]", round, i, d, step/2, step)
				}
				b = saved
			}
			b.Next()
		}
		b.Reset()
	}
}

// TestBackoffJitter checks that waits at one step differ, so that peers
// that failed together spread out.
func TestBackoffJitter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 20 {
		b := Backoff{Min: time.Second, Max: time.Second}
		seen[b.Next()] = true
	}
	if len(seen) < 2 {
		t.Errorf("20 first waits were all %v", seen)
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(t.Context(), time.Millisecond) {
		t.Error("Sleep of 1 ms did not run to its end")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep ran to its end on a cancelled context")
	}
}
