package testwait_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherdev/tether/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testTimeout = 10 * time.Second

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// until runs testwait.Until on a goroutine of its own with a recording
// TB, and returns what it failed with ("" when it returned).
func until(t *testing.T, ctx context.Context, what string, cond func() bool) string {
	t.Helper()
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testwait.Until(tb, ctx, what, cond)
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("Until did not return")
	}
	return tb.msg
}

func TestUntil(t *testing.T) {
	live, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ended, end := context.WithCancel(context.Background())
	end()

	tests := []struct {
		name    string
		ctx     context.Context
		holdsAt int32 // the poll at which cond first holds; 0 for never
		want    string
	}{
		{"holds at once", live, 1, ""},
		{"holds later", live, 4, ""},
		{"holds at once, context ended", ended, 1, ""},
		{"never holds, context ended", ended, 0, "timed out waiting until the thing happens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var polls atomic.Int32
			got := until(t, tc.ctx, "the thing happens", func() bool {
				n := polls.Add(1)
				return tc.holdsAt != 0 && n >= tc.holdsAt
			})
			if got != tc.want {
				t.Errorf("failed with %q, want %q", got, tc.want)
			}
			if tc.holdsAt != 0 && polls.Load() != tc.holdsAt {
				t.Errorf("cond polled %d times, want %d", polls.Load(), tc.holdsAt)
			}
		})
	}
}
