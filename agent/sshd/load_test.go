package sshd_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/sshd"
	"golang.org/x/crypto/ssh"
)

// loadEnv set to "full" runs TestLoadStarvedCopies at the size of issue 10
// (1,020 sessions); by default it runs two rounds.
const loadEnv = "TETHER_SSHD_LOAD"

// TestLoadStarvedCopies is issue 10's load test at the agent's SSH server,
// with the output copies slowed on purpose (which the real binaries cannot
// be made to do): 60 concurrent `seq 1 5000` sessions spread over 30
// servers, in rounds, where every copy of a session's output waits up to
// two seconds before its first read and now and then before later ones,
// longer than the server's grace for background processes. Every line of
// every session must arrive, and no session may hang. On the old code
// about half the sessions lost all their output and exited 0.
//
// The end-to-end version, through real `tether ssh` processes and agents,
// is part of the bench: go run ./bench -parts sshload.
func TestLoadStarvedCopies(t *testing.T) {
	const servers, concurrency, lines = 30, 60, 5000
	sessions := 2 * concurrency
	if os.Getenv(loadEnv) == "full" {
		sessions = 1000
	}
	slow := func(reads int) {
		switch {
		case reads == 0:
			time.Sleep(rand.N(2 * time.Second))
		case rand.N(20) == 0:
			time.Sleep(rand.N(1500 * time.Millisecond))
		}
	}
	clients := make([]*ssh.Client, servers)
	for i := range clients {
		ts := startServerWith(t, sshd.Options{}, func(s *sshd.Server) { sshd.SetBeforeOutputRead(s, slow) })
		clients[i] = dial(t, ts)
	}
	want := seqOutput(lines, "\n")
	command := fmt.Sprintf("seq 1 %d", lines)

	var (
		done, lost, silent, hung atomic.Int64
		lostLines                atomic.Int64
		mu                       sync.Mutex
		firstErr                 error
	)
	start := time.Now()
	rounds := 0
	for n := 0; int(done.Load()) < sessions; rounds++ {
		var wg sync.WaitGroup
		for range concurrency {
			c := clients[n%servers]
			n++
			wg.Go(func() {
				defer done.Add(1)
				s, err := c.NewSession()
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
				defer s.Close()
				var out syncBuffer
				s.Stdout = &out
				ended := make(chan error, 1)
				go func() { ended <- s.Run(command) }()
				var err2 error
				select {
				case err2 = <-ended:
				case <-time.After(testTimeout):
					hung.Add(1)
					s.Close()
					<-ended
					return
				}
				if got := out.String(); got != want {
					lost.Add(1)
					lostLines.Add(int64(lines - bytes.Count([]byte(got), []byte("\n"))))
					if err2 == nil {
						silent.Add(1)
					}
				}
				if err2 != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err2)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	t.Logf("FIGURE %d sessions in %d rounds of %d on %d servers in %s: %d lost output (%d lines, %d of them exited 0), %d hung",
		done.Load(), rounds, concurrency, servers, time.Since(start).Round(100*time.Millisecond), lost.Load(), lostLines.Load(), silent.Load(), hung.Load())
	if lost.Load() > 0 || hung.Load() > 0 {
		t.Errorf("%d sessions lost output (%d lines; %d exited 0), %d hung", lost.Load(), lostLines.Load(), silent.Load(), hung.Load())
	}
	if firstErr != nil {
		t.Errorf("a session failed: %v", firstErr)
	}
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
