package servercmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFile is the file in the data directory that one server at a time
// holds locked for its whole life. Two servers on one directory would
// share a SQLite file and fight over the --dev agent's token (each start
// renews it), so the second is refused.
const lockFile = "server.lock"

// errLocked is what the platform's lock returns when another process
// holds it.
var errLocked = errors.New("locked")

// lockDataDir takes the data directory's lock, or says which process has
// it. The lock is the operating system's (flock, LockFileEx): it ends with
// the process however it ends, so a crash leaves no stale lock behind,
// only a file that the next server locks and rewrites. Call unlock when
// the server has stopped.
func lockDataDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock --data-dir: %w", err)
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, fmt.Errorf("another tether server%s is using --data-dir %s: stop it first, or give this one another --data-dir", holder(path), dir)
		}
		return nil, fmt.Errorf("lock --data-dir: %w", err)
	}
	// Who holds it, for the message above; best effort.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	}
	return func() { f.Close() }, nil
}

// holder names the process that wrote the lock file: " (pid N)", or ""
// when it cannot tell.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(string(b), "pid ")))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}
