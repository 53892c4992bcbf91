package sshd

import (
	"io"
	"sync"
	"time"
)

// outputCopy copies a program's output (a PTY or a pipe) to the client.
//
// When the program exits, its output may go on for two reasons that call
// for opposite handling: the client is slow, and what the program wrote is
// still queued in the pipe or the PTY (it must all be delivered, however
// long that takes); or a background process inherited the output and holds
// it open (the session must not wait for it). The copy tells them apart by
// where it is blocked: in a write to the client, or in a read from the
// program's side.
type outputCopy struct {
	done chan struct{}

	mu        sync.Mutex
	readSince time.Time // guarded by mu; when the pending Read began, zero during a Write
}

// copyOutput starts copying r to w on a goroutine counted in wg.
func copyOutput(wg *sync.WaitGroup, w io.Writer, r io.Reader) *outputCopy {
	oc := &outputCopy{done: make(chan struct{})}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(oc.done)
		buf := make([]byte, 32<<10)
		for {
			oc.setReading(true)
			n, err := r.Read(buf)
			oc.setReading(false)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return oc
}

func (oc *outputCopy) setReading(reading bool) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	if reading {
		oc.readSince = time.Now()
	} else {
		oc.readSince = time.Time{}
	}
}

// drain waits, once the program has exited, for the copy to reach the end
// of the output. If the copy has waited outputGrace for more to read, drain
// calls stop, which must close the reading side, and waits for the copy to
// end.
func (oc *outputCopy) drain(stop func()) {
	start := time.Now()
	t := time.NewTicker(outputGrace / 4)
	defer t.Stop()
	for {
		select {
		case <-oc.done:
			return
		case now := <-t.C:
			oc.mu.Lock()
			since := oc.readSince
			oc.mu.Unlock()
			if since.IsZero() {
				continue // writing to the client: wait for it
			}
			if since.Before(start) {
				since = start
			}
			if now.Sub(since) >= outputGrace {
				stop()
				<-oc.done
				return
			}
		}
	}
}
