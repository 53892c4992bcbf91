//go:build !windows

package cli

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/term"
)

func (t localTerminal) size() (cols, rows int, err error) {
	return term.GetSize(int(t.in.Fd()))
}

func (t localTerminal) makeRaw() (restore func(), err error) {
	fd := int(t.in.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	return func() { term.Restore(fd, state) }, nil
}

func (t localTerminal) input() io.Reader { return t.in }

// watchSize follows the window's size on SIGWINCH, which the kernel sends
// to the foreground process group when the terminal is resized.
func (t localTerminal) watchSize(first [2]int, changed func(cols, rows int)) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { followSize(ch, done, first, t.size, changed) })
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}
