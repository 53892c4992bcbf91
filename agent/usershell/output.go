package usershell

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// When a program exits, its output may still be on its way to the reader,
// and two needs pull in opposite directions: everything the program wrote
// must reach the reader, however slowly the reader runs (a starved
// goroutine, a stalled client); and a background process that inherited the
// output (`sleep 100 &`) must not hold the session open. How long the reader
// has been waiting says nothing about either, so the rule asks the kernel
// instead:
//
//   - When the program has exited, everything it wrote is in the pipe or the
//     terminal already: a write blocks until the kernel has taken all of it,
//     so a program cannot exit with output unwritten. With nobody else
//     holding the writing side, the reader gets all of it and then the end:
//     EOF from a pipe, EIO from a PTY master once the terminal is closed
//     (n_tty_read flushes what the kernel still holds between the terminal
//     and the master, the tty flip buffer, before it answers EIO).
//   - If the end does not come, something else holds the writing side. The
//     reading side is then closed once DrainGrace has passed since the exit
//     AND nothing is left to read. Bytes still queued are never dropped,
//     however long the reader takes to get to them; only what the
//     background process writes after the queue ran dry is.
//
// "Nothing left to read" is poll(2) with POLLIN, not FIONREAD/TIOCINQ: for a
// PTY master, TIOCINQ counts only the line discipline's buffer and misses
// what is still in the flip buffer, while n_tty_poll flushes the flip
// buffer before it answers. For a pipe the two agree.

// drainChecks is how many times per grace period DrainOutput looks at the
// output once the grace period has passed.
const drainChecks = 4

// DrainOutput is called once the program writing to out (a pipe's reading
// side or a PTY master) has exited and been reaped. It waits until the
// reader of out is done (readDone closed, at the end of the output); if
// the end does not come because another process holds the writing side,
// it closes out once grace has passed since the call and out has nothing
// left to read, and waits for the reader to notice. The reader must stop
// at the first error.
func DrainOutput(out *os.File, readDone <-chan struct{}, grace time.Duration) {
	exited := time.Now()
	t := time.NewTicker(max(grace/drainChecks, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-readDone:
			return
		case <-t.C:
		}
		if time.Since(exited) < grace {
			continue
		}
		queued, err := readable(out)
		if err != nil {
			// out is closed already (by its owner): the reader ends.
			<-readDone
			return
		}
		if !queued {
			out.Close()
			<-readDone
			return
		}
	}
}

// readable reports whether a read on f would return data now.
func readable(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var ready bool
	var pollErr error
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, pollErr = unix.Poll(fds, 0)
			if !errors.Is(pollErr, unix.EINTR) {
				break
			}
		}
		ready = fds[0].Revents&unix.POLLIN != 0
	})
	if err != nil {
		return false, err
	}
	if pollErr != nil {
		// Cannot tell: assume bytes are queued rather than drop them.
		return true, nil
	}
	return ready, nil
}
