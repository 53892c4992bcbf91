//go:build !unix

package coalesce

import (
	"os"
	"time"
)

// waitReadable cannot tell on this system: a StreamReader returns each
// piece as it comes.
func waitReadable(*os.File, time.Duration) (bool, error) { return false, nil }

// growPipe cannot change a pipe's buffer on this system.
func growPipe(*os.File, int) {}
