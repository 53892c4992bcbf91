package sshd

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/tetherdev/tether/agent/usershell"
)

// A program's output reaches the copy in the pieces it writes: 4 KiB from a
// PTY, 8 KiB from `head` or `cat`'s smaller cousins. Sent as they come, each
// piece is an SSH packet and a write to the tunnel of its own, and the
// tunnel's cost goes by the write, not by the byte: `head -c` through
// OpenSSH moved a third of what `dd bs=256k` did. So while output streams
// (a read follows the previous one within streamGap), the copy gathers what
// else arrives within gatherWait into the same write, for at most gatherMax.
// The first piece of a burst, and output that comes slower than that (an
// echoed keystroke, a prompt), goes out at once.
const (
	outputBufSize = 128 << 10
	streamGap     = time.Millisecond
	gatherWait    = 100 * time.Microsecond
	gatherMax     = time.Millisecond
)

// copyOutput starts copying r, a program's output (a PTY master or a
// pipe), to w on a goroutine counted in wg. The returned channel is closed
// when the copy has ended: at the end of the output, at the first error,
// or when the client stopped taking data. usershell.DrainOutput decides,
// once the program has exited, whether the copy may be cut short.
//
// beforeRead, when set, runs before each read of a new piece with the
// number of reads done so far; tests use it to starve the copy.
func copyOutput(wg *sync.WaitGroup, w io.Writer, r *os.File, beforeRead func(reads int)) <-chan struct{} {
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		buf := make([]byte, outputBufSize)
		var last time.Time // when the previous read returned
		for reads := 0; ; reads++ {
			if beforeRead != nil {
				beforeRead(reads)
			}
			n, err := r.Read(buf)
			now := time.Now()
			if n > 0 && err == nil && now.Sub(last) < streamGap {
				n, err = gather(r, buf, n, now.Add(gatherMax))
			}
			last = time.Now()
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
	return done
}

// gather reads into buf after its first n bytes what r gives within
// gatherWait of each read, until buf is full or the deadline. It returns
// the bytes in buf and the error of the last read.
func gather(r *os.File, buf []byte, n int, deadline time.Time) (int, error) {
	for n < len(buf) {
		wait := min(gatherWait, time.Until(deadline))
		if wait <= 0 {
			break
		}
		if ok, err := usershell.WaitReadable(r, wait); err != nil || !ok {
			break
		}
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
