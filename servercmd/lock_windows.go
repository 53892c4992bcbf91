//go:build windows

package servercmd

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockExclusive locks f for this process without waiting.
func lockExclusive(f *os.File) error {
	var ol windows.Overlapped
	err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return errLocked
	}
	return err
}
