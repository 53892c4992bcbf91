package reconnectingpty_test

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/ptyproto"
)

// TestStarvedOutputReader checks that a session's last output reaches its
// client when the reader of the terminal is starved: its first read comes
// long after the command has exited, later than the grace period for
// background processes (1 s). The terminal used to be closed when that
// period ran out, with the output still in it.
func TestStarvedOutputReader(t *testing.T) {
	ts := startServerWith(t, reconnectingpty.Options{}, func(s *reconnectingpty.Server) {
		reconnectingpty.SetBeforeOutputRead(s, func(reads int) {
			if reads == 0 {
				time.Sleep(1500 * time.Millisecond)
			}
		})
	})
	// Small enough to fit in the terminal, so the command exits at once.
	const lines = 500
	for _, tc := range []struct{ name, command string }{
		{"exits", fmt.Sprintf("seq 1 %d", lines)},
		{"background holder", fmt.Sprintf("setsid sleep 60 & seq 1 %d; echo holder=$!", lines)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attach(t, ts, ptyproto.Header{ID: tc.name, Command: tc.command})
			a.waitEOF()
			out := a.output()
			var want strings.Builder
			for i := 1; i <= lines; i++ {
				want.WriteString(strconv.Itoa(i) + "\r\n")
			}
			if !strings.HasPrefix(out, want.String()) {
				t.Errorf("got %d bytes of output, want the %d of seq 1 %d first", len(out), want.Len(), lines)
			}
			if _, pid, ok := strings.Cut(out, "holder="); ok {
				if n, err := strconv.Atoi(strings.TrimSpace(pid)); err == nil {
					syscall.Kill(n, syscall.SIGKILL)
				}
			}
		})
	}
}
