//go:build unix && !linux

package coalesce

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waitReadable polls f with poll(2), whose timeout is in milliseconds: a
// wait shorter than one becomes one.
func waitReadable(f *os.File, timeout time.Duration) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	ms := int((max(timeout, 0) + time.Millisecond - 1) / time.Millisecond)
	var ready bool
	var pollErr error
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, pollErr = unix.Poll(fds, ms)
			if !errors.Is(pollErr, unix.EINTR) {
				break
			}
		}
		ready = pollErr == nil && fds[0].Revents&unix.POLLIN != 0
	})
	if err != nil {
		return false, err
	}
	return ready, nil
}

// growPipe cannot change a pipe's buffer on this system.
func growPipe(*os.File, int) {}
