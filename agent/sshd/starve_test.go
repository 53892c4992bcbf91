package sshd_test

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/sshd"
	"golang.org/x/crypto/ssh"
)

// starvedFirstRead is how long the copies of a session's output wait
// before their first read in TestStarvedOutputCopy: longer than the grace
// period the server gives background processes (1 s), as a copy starved
// of CPU on a loaded machine may wait.
const starvedFirstRead = 1500 * time.Millisecond

// starve delays the copies of session output: the first read of each copy
// by starvedFirstRead, the next two by a little, the rest not at all.
func starve(reads int) {
	switch {
	case reads == 0:
		time.Sleep(starvedFirstRead)
	case reads < 3:
		time.Sleep(100 * time.Millisecond)
	}
}

// seqOutput is what `seq 1 n` prints, with newline as the line end.
func seqOutput(n int, newline string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteString(newline)
	}
	return b.String()
}

// TestStarvedOutputCopy runs many sessions at once whose output copies are
// starved (their first read comes long after the program has exited) and
// checks that every byte arrives, with and without a PTY, and with a
// background process holding the output. The server used to close the
// output once a copy had been "reading" for a second after the program
// exited, which under CPU starvation was output still queued: `tether ssh
// ws -- seq 1 5000` printed nothing and exited 0.
func TestStarvedOutputCopy(t *testing.T) {
	ts := startServerWith(t, sshd.Options{}, func(s *sshd.Server) { sshd.SetBeforeOutputRead(s, starve) })
	c := dial(t, ts)

	// A PTY holds a few kilobytes between the program and the server (a
	// pipe 64 KiB): small enough output that the program exits before
	// the starved copy has read any of it.
	const lines, ptyLines = 5000, 1000
	type result struct {
		name, out string
		err       error
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
	)
	runOne := func(name, command string, withPTY bool) {
		defer wg.Done()
		s, err := c.NewSession()
		if err != nil {
			mu.Lock()
			results = append(results, result{name: name, err: err})
			mu.Unlock()
			return
		}
		defer s.Close()
		if withPTY {
			// No echo, no output processing surprises: what the program
			// writes, with CR LF line ends.
			if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
				mu.Lock()
				results = append(results, result{name: name, err: err})
				mu.Unlock()
				return
			}
		}
		var out syncBuffer
		s.Stdout = &out
		done := make(chan error, 1)
		go func() { done <- s.Run(command) }()
		var res result
		select {
		case res.err = <-done:
		case <-time.After(testTimeout):
			s.Close()
			<-done
			res.err = fmt.Errorf("session did not end")
		}
		res.name, res.out = name, out.String()
		mu.Lock()
		results = append(results, res)
		mu.Unlock()
	}
	const perKind = 6
	for i := range perKind {
		wg.Add(4)
		go runOne(fmt.Sprintf("pipes %d", i), fmt.Sprintf("seq 1 %d", lines), false)
		go runOne(fmt.Sprintf("pty %d", i), fmt.Sprintf("seq 1 %d", ptyLines), true)
		// The holder is started first and prints its pid, so that it can
		// be ended; setsid keeps it from a PTY session's hang-up.
		go runOne(fmt.Sprintf("pipes, holder %d", i), fmt.Sprintf("setsid sleep 60 & echo $!; seq 1 %d", lines), false)
		go runOne(fmt.Sprintf("pty, holder %d", i), fmt.Sprintf("setsid sleep 60 & echo $!; seq 1 %d", ptyLines), true)
	}
	wg.Wait()

	for _, r := range results {
		nl, n := "\n", lines
		if strings.HasPrefix(r.name, "pty") {
			nl, n = "\r\n", ptyLines
		}
		out := r.out
		if strings.Contains(r.name, "holder") {
			first, rest, _ := strings.Cut(out, nl)
			if pid, err := strconv.Atoi(first); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			out = rest
		}
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
		}
		if want := seqOutput(n, nl); out != want {
			t.Errorf("%s: got %d bytes (%d lines), want %d bytes", r.name, len(out), bytes.Count([]byte(out), []byte(nl)), len(want))
		}
	}
}

// TestExitAfterReply checks that a program that ends before the server
// has answered the request that started it still ends the session the
// right way round: answer, output, exit status, close. Under load the
// answer used to lose that race, and the client saw its exec request fail
// with EOF (`tether ssh` printed "start remote command: EOF") for a
// command that had run.
func TestExitAfterReply(t *testing.T) {
	ts := startServerWith(t, sshd.Options{}, func(s *sshd.Server) {
		sshd.SetBeforeStartReply(s, func() { time.Sleep(300 * time.Millisecond) })
	})
	c := dial(t, ts)
	for _, tc := range []struct {
		name    string
		withPTY bool
	}{{"pipes", false}, {"pty", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if tc.withPTY {
				if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
					t.Fatal(err)
				}
			}
			var out syncBuffer
			s.Stdout = &out
			err = s.Run("echo quick; exit 3")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
				t.Errorf("Run = %v, want exit status 3", err)
			}
			if got := strings.TrimSpace(out.String()); got != "quick" {
				t.Errorf("output %q, want quick", got)
			}
		})
	}
}
