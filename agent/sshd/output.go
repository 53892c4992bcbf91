package sshd

import (
	"io"
	"os"
	"sync"

	"github.com/tetherdev/tether/internal/coalesce"
)

// outputBufSize is the most one read of a program's output passes on, as
// one write to the channel (several SSH packets, which the connection
// writes to the tunnel together; see package coalesce).
const outputBufSize = 128 << 10

// copyOutput starts copying r, a program's output (a PTY master or a
// pipe), to w on a goroutine counted in wg. The returned channel is closed
// when the copy has ended: at the end of the output, at the first error,
// or when the client stopped taking data. usershell.DrainOutput decides,
// once the program has exited, whether the copy may be cut short.
//
// While the output streams, the copy gathers the program's small writes
// into larger ones (coalesce.StreamReader); an echoed keystroke or a
// prompt goes out at once.
//
// beforeRead, when set, runs before each read with the number of reads
// done so far; tests use it to starve the copy.
func copyOutput(wg *sync.WaitGroup, w io.Writer, r *os.File, beforeRead func(reads int)) <-chan struct{} {
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		sr := coalesce.NewStreamReader(r)
		buf := make([]byte, outputBufSize)
		for reads := 0; ; reads++ {
			if beforeRead != nil {
				beforeRead(reads)
			}
			n, err := sr.Read(buf)
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
