package sshd

import (
	"io"
	"sync"
)

// copyOutput starts copying r, a program's output (a PTY master or a
// pipe), to w on a goroutine counted in wg. The returned channel is closed
// when the copy has ended: at the end of the output, at the first error,
// or when the client stopped taking data. usershell.DrainOutput decides,
// once the program has exited, whether the copy may be cut short.
//
// beforeRead, when set, runs before each read with the number of reads
// done so far; tests use it to starve the copy.
func copyOutput(wg *sync.WaitGroup, w io.Writer, r io.Reader, beforeRead func(reads int)) <-chan struct{} {
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		buf := make([]byte, 32<<10)
		for reads := 0; ; reads++ {
			if beforeRead != nil {
				beforeRead(reads)
			}
			n, err := r.Read(buf)
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
