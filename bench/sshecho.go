package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/tetherdev/tether/internal/harness"
	"golang.org/x/term"
)

// Keystroke echo (part sshbulk): what the bulk paths must not cost an
// interactive session. A client runs `cat` in a remote terminal on a
// terminal of the bench's own; each key the bench types comes back as the
// remote terminal's echo, and the time from key to echo is the figure.
// Keys are paced as a fast typist's, so each is a burst of its own and
// none is gathered with the next.
const (
	echoKeys = 100
	echoGap  = 20 * time.Millisecond
	// echoHangUpWait bounds how long a client may take to end after
	// its terminal hangs up.
	echoHangUpWait = 10 * time.Second
)

// sshEcho records the p50 and p99 of keystroke echo through the client
// that argv starts (its remote command "cat", with a terminal).
func (e *e2e) sshEcho(ctx context.Context, name string, argv sshArgv, what string) error {
	ds, err := keystrokeEcho(ctx, argv)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d keys %v apart, after the session is up; max %.2f ms; %s", s.N, echoGap, millis(s.Max), what)
	e.res.lower(name+"-p50", millis(s.P50), "ms", note)
	e.res.lower(name+"-p99", millis(s.P99), "ms", note)
	return nil
}

// keystrokeEcho starts argv's client on a new terminal, waits until a key
// comes back from the remote one, and then times echoKeys keys.
func keystrokeEcho(ctx context.Context, argv sshArgv) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, harness.CommandTimeout)
	defer cancel()
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, err
	}
	defer ptmx.Close()
	// Raw from the start: before the client takes the terminal, a key
	// would otherwise be echoed here rather than by the remote side.
	if _, err := term.MakeRaw(int(tty.Fd())); err != nil {
		tty.Close()
		return nil, err
	}
	bin, args, env := argv("cat")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(harness.CleanEnv(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	err = cmd.Start()
	tty.Close()
	if err != nil {
		return nil, err
	}
	defer func() {
		// A hang-up, as when a terminal window closes: ssh then ends its
		// ProxyCommand too. A client that ignores it is killed.
		ptmx.Close()
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(echoHangUpWait):
			cmd.Process.Kill()
			<-exited
		}
	}()

	got := make(chan byte, 4096)
	go func() {
		defer close(got)
		buf := make([]byte, 1024)
		for {
			n, err := ptmx.Read(buf)
			for _, b := range buf[:n] {
				got <- b
			}
			if err != nil {
				return // the bench closes ptmx
			}
		}
	}()
	// echo types key and waits for it to come back, skipping what else
	// the client prints.
	echo := func(key byte) (time.Duration, error) {
		t0 := time.Now()
		if _, err := ptmx.Write([]byte{key}); err != nil {
			return 0, err
		}
		for {
			select {
			case b, ok := <-got:
				if !ok {
					return 0, errors.New("the client ended before echoing a key")
				}
				if b == key {
					return time.Since(t0), nil
				}
			case <-ctx.Done():
				return 0, fmt.Errorf("no echo of a key: %w", ctx.Err())
			}
		}
	}
	if _, err := echo('r'); err != nil { // the session is up
		return nil, err
	}
	var ds []time.Duration
	for i := range echoKeys {
		time.Sleep(echoGap)
		d, err := echo('a' + byte(i%26))
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}
