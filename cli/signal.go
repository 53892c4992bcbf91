package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Interrupted is the cause of a command's context when a signal (Ctrl-C,
// or SIGTERM) asked the process to stop.
type Interrupted struct{ Signal os.Signal }

func (e *Interrupted) Error() string { return "interrupted by " + e.Signal.String() }

// exitCode is the shell's convention for a process ended by a signal:
// 128 + its number (130 for Ctrl-C).
func (e *Interrupted) exitCode() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// NotifyContext returns a context that ends with an *Interrupted cause at
// the first SIGINT or SIGTERM. A second one kills the process as usual,
// for a command that does not stop in time. Call stop to let go of the
// signals.
func NotifyContext(ctx context.Context) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			signal.Stop(ch)
			cancel(&Interrupted{Signal: sig})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}
