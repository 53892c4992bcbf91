package reconnectingpty_test

import (
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/ptyproto"
)

// TestAnswerBeforeStart checks that a client is answered while its new
// session's process has yet to start, and that other sessions are served
// meanwhile: on a loaded machine starts queue behind one another (a
// process's forks take one lock), and 200 web terminals opened at once
// used to wait for every start ahead of theirs before their answer, the
// last beyond the server's 30 s bound for reaching the agent.
func TestAnswerBeforeStart(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	_, addr := positionsServerWith(t, reconnectingpty.Options{}, func(s *reconnectingpty.Server) {
		reconnectingpty.SetBeforeStart(s, func(id string) error {
			if id == "held" {
				<-release
			}
			return nil
		})
	})
	t.Cleanup(unblock) // before the server's Close, which waits for the start
	// attachAt fails the test if the answer does not come within
	// testTimeout: the old code answered only after the start.
	held := attachAt(t, addr, ptyproto.Header{ID: "held", Command: "echo HELD-$((6*7)); read l; echo READ-$l; sleep 60"})
	if !held.attached.Replay || held.attached.Offset != 0 {
		t.Errorf("new session answered %+v, want offset 0 and a replay", held.attached)
	}
	other := attachAt(t, addr, ptyproto.Header{ID: "other", Command: "echo OTHER-$((6*7)); sleep 60"})
	other.waitFor("OTHER-42")
	// A second client of the held session is answered too.
	again := attachAt(t, addr, ptyproto.Header{ID: "held"})
	if again.attached.Instance != held.attached.Instance {
		t.Errorf("second client attached to instance %q, want the held session's %q", again.attached.Instance, held.attached.Instance)
	}
	// Typed before the shell runs, read by it once it does.
	if _, err := held.conn.Write([]byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	unblock()
	held.waitFor(`READ-typed`)
	again.waitFor("HELD-42")
}

// TestStartFailureSaysWhy checks that a session whose process cannot
// start tells its clients why, after the answer, and ends: its id is free
// for a new session.
func TestStartFailureSaysWhy(t *testing.T) {
	fail := true
	var mu sync.Mutex
	_, addr := positionsServerWith(t, reconnectingpty.Options{}, func(s *reconnectingpty.Server) {
		reconnectingpty.SetBeforeStart(s, func(string) error {
			mu.Lock()
			defer mu.Unlock()
			if fail {
				return syscall.EAGAIN
			}
			return nil
		})
	})
	p := attachAt(t, addr, ptyproto.Header{ID: "s", Command: "echo STARTED-$((6*7))"})
	p.waitFor(`reconnectingpty: start shell: ` + regexp.QuoteMeta(syscall.EAGAIN.Error()) + `\r\n$`)
	deadline := time.After(testTimeout)
	for ended := false; !ended; {
		select {
		case _, ok := <-p.out:
			ended = !ok
		case <-deadline:
			t.Fatal("the connection of a session that failed to start stayed open")
		}
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	p2 := attachAt(t, addr, ptyproto.Header{ID: "s", Command: "echo STARTED-$((6*7))"})
	if p2.attached.Instance == p.attached.Instance {
		t.Errorf("the session that failed to start was reattached (instance %q)", p2.attached.Instance)
	}
	p2.waitFor("STARTED-42")
}
