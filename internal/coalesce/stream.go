package coalesce

import (
	"os"
	"time"
)

// A stream from another process (a program's output, OpenSSH's packets on
// a ProxyCommand's stdin) reaches a reader in the pieces the writer wrote:
// 8 KiB from `head`, 4 KiB from a PTY, one SSH packet (up to 32 KiB) from
// OpenSSH. A reader that keeps up passes each piece on alone, and through
// the tunnel each costs about as much as a piece eight times its size:
// `head -c` through OpenSSH moved a third of what `dd bs=256k` did. So
// while a stream flows (a read follows the previous one within StreamGap),
// StreamReader gathers what else arrives within GatherWait into the same
// read, for at most GatherMax. The first piece of a burst, and anything
// that comes slower (an echoed keystroke, a prompt), is returned at once.
const (
	StreamGap  = time.Millisecond
	GatherWait = 100 * time.Microsecond
	GatherMax  = time.Millisecond
)

// StreamReader reads from a pipe, a PTY master or a socket, gathering a
// stream's pieces (see StreamGap). It is not safe for concurrent use.
type StreamReader struct {
	f    *os.File
	last time.Time // when the previous read returned
}

// NewStreamReader reads from f: a pipe, a PTY master, a socket or a
// terminal, blocking or not.
func NewStreamReader(f *os.File) *StreamReader { return &StreamReader{f: f} }

// Read reads at least one byte (or fails), and while a stream flows gathers
// more into p as described above.
func (s *StreamReader) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	now := time.Now()
	if n > 0 && err == nil && now.Sub(s.last) < StreamGap {
		n, err = gather(s.f, p, n, now.Add(GatherMax))
	}
	s.last = time.Now()
	return n, err
}

// gather reads into buf after its first n bytes what f gives within
// GatherWait of each read, until buf is full or the deadline. It returns
// the bytes in buf and the error of the last read.
func gather(f *os.File, buf []byte, n int, deadline time.Time) (int, error) {
	for n < len(buf) {
		wait := min(GatherWait, time.Until(deadline))
		if wait <= 0 {
			break
		}
		if ok, err := WaitReadable(f, wait); err != nil || !ok {
			break
		}
		m, err := f.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// WaitReadable reports whether a read on f would return data, waiting up to
// timeout for it (0: not at all). An error means f is closed. Where the
// system cannot tell, it reports false: no gathering, no harm.
func WaitReadable(f *os.File, timeout time.Duration) (bool, error) {
	return waitReadable(f, timeout)
}

// PipeSize is the buffer GrowPipe asks for: the most an unprivileged
// process may have (/proc/sys/fs/pipe-max-size), against the kernel's 64
// KiB. A larger pipe lets the reader take more per wake-up, and the writer
// block less often.
const PipeSize = 1 << 20

// GrowPipe enlarges the buffer of f, if it is a pipe, to PipeSize where the
// system allows it. It is best effort: a file that is not a pipe, or a
// system that says no, keeps the buffer it has.
func GrowPipe(f *os.File) { growPipe(f, PipeSize) }
