package cli

import (
	"os"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// localTerminal is the user's terminal during an interactive `tether ssh`.
// Its methods differ by operating system (terminal_unix.go,
// terminal_windows.go):
//
//   - size() (cols, rows int, err error): the window's size.
//   - makeRaw() (restore func(), err error): passes every key through, ^C
//     and ^Z included, and on Windows makes the console interpret the
//     remote side's escape sequences.
//   - input() io.Reader: what to send to the session.
//   - watchSize(first [2]int, changed func(cols, rows int)) (stop func()):
//     calls changed whenever the window's size changes from first, until
//     stop.
type localTerminal struct {
	in *os.File // the terminal's input: stdin
	// out is the terminal's output (stdout), or nil when that is not a
	// terminal. Windows reads the window's size from the output console.
	out *os.File
}

// sizePollInterval is how often the window's size is read where the
// system does not signal its changes (Windows has no SIGWINCH). A quarter
// of a second is quick enough for a person dragging a window's edge, and
// one system call each time costs nothing.
const sizePollInterval = 250 * time.Millisecond

// followSize calls changed with the size that size reports at each tick,
// when it differs from the last one seen (first: the size the session
// started with), until stop is closed. A failed read is skipped.
func followSize[T any](tick <-chan T, stop <-chan struct{}, first [2]int, size func() (cols, rows int, err error), changed func(cols, rows int)) {
	last := first
	for {
		select {
		case <-stop:
			return
		case <-tick:
		}
		c, r, err := size()
		if err != nil || [2]int{c, r} == last {
			continue
		}
		last = [2]int{c, r}
		changed(c, r)
	}
}

// utf16Decoder turns the UTF-16 that the Windows console API reads into
// UTF-8, keeping the first half of a surrogate pair that one read ends
// with for the next. Unpaired surrogates become U+FFFD. Every other code
// unit passes through, control characters included.
type utf16Decoder struct {
	high rune // a pending high surrogate, or 0
}

func (d *utf16Decoder) decode(dst []byte, src []uint16) []byte {
	for _, u := range src {
		r := rune(u)
		if d.high != 0 {
			pair := utf16.DecodeRune(d.high, r)
			d.high = 0
			if pair != utf8.RuneError {
				dst = utf8.AppendRune(dst, pair)
				continue
			}
			dst = utf8.AppendRune(dst, utf8.RuneError)
		}
		if 0xd800 <= r && r < 0xdc00 {
			d.high = r
			continue
		}
		dst = utf8.AppendRune(dst, r) // a lone low surrogate appends U+FFFD
	}
	return dst
}
