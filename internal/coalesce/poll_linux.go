package coalesce

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// waitReadable polls f with ppoll(2), whose timeout has the microseconds
// that GatherWait needs.
func waitReadable(f *os.File, timeout time.Duration) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	ts := unix.NsecToTimespec(max(timeout, 0).Nanoseconds())
	var ready bool
	var pollErr error
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, pollErr = unix.Ppoll(fds, &ts, nil)
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

// growPipe asks the kernel for a pipe buffer of size bytes.
func growPipe(f *os.File, size int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size)
	})
}
