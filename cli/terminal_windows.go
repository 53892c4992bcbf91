package cli

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/term"
)

// size reads the window's size from the output console: the input
// console has no screen buffer to ask.
func (t localTerminal) size() (cols, rows int, err error) {
	if t.out == nil {
		return 0, 0, errors.New("stdout is not a console")
	}
	return term.GetSize(int(t.out.Fd()))
}

// makeRaw sets the input console to pass every key through as terminal
// input (x/term clears line editing, echo and Ctrl-C processing and turns
// on virtual terminal input, so arrows arrive as escape sequences), and
// the output console to interpret escape sequences as a terminal does,
// with a line feed that only moves down.
func (t localTerminal) makeRaw() (restore func(), err error) {
	fd := int(t.in.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, err
	}
	restoreIn := func() { term.Restore(fd, state) }
	if t.out == nil {
		return restoreIn, nil
	}
	h := windows.Handle(t.out.Fd())
	var mode uint32
	if err := windows.GetConsoleMode(h, &mode); err != nil {
		restoreIn()
		return nil, fmt.Errorf("read the console's output mode: %w", err)
	}
	vt := mode | windows.ENABLE_PROCESSED_OUTPUT | windows.ENABLE_VIRTUAL_TERMINAL_PROCESSING | windows.DISABLE_NEWLINE_AUTO_RETURN
	if err := windows.SetConsoleMode(h, vt); err != nil {
		restoreIn()
		return nil, fmt.Errorf("this console cannot show a terminal (virtual terminal processing needs Windows 10 or later): %w", err)
	}
	return func() {
		windows.SetConsoleMode(h, mode)
		restoreIn()
	}, nil
}

// input reads the console itself rather than through os.Stdin, which
// takes Ctrl-Z for the end of input and drops it; the remote shell needs
// it to suspend its foreground job.
func (t localTerminal) input() io.Reader {
	return &consoleReader{h: windows.Handle(t.in.Fd())}
}

// watchSize polls the window's size: Windows has no SIGWINCH, and the
// console API reports resizes only as input records, which ReadConsole
// (reading the keys) skips.
func (t localTerminal) watchSize(first [2]int, changed func(cols, rows int)) (stop func()) {
	tick := time.NewTicker(sizePollInterval)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { followSize(tick.C, done, first, t.size, changed) })
	return func() {
		tick.Stop()
		close(done)
		wg.Wait()
	}
}

// consoleReader reads a console's input as UTF-8.
type consoleReader struct {
	h   windows.Handle
	dec utf16Decoder
	u16 [512]uint16
	buf []byte // decoded, not yet read
}

func (r *consoleReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.buf) == 0 {
		var n uint32
		if err := windows.ReadConsole(r.h, &r.u16[0], uint32(len(r.u16)), &n, nil); err != nil {
			return 0, fmt.Errorf("read the console: %w", err)
		}
		r.buf = r.dec.decode(r.buf[:0], r.u16[:n])
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
