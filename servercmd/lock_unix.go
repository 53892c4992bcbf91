//go:build unix

package servercmd

import (
	"errors"
	"os"
	"syscall"
)

// lockExclusive locks f for this process without waiting.
func lockExclusive(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}
