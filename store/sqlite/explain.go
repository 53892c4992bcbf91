package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// explainOpen turns SQLite's terse refusals to open or write the database
// at path ("unable to open database file (14)", "attempt to write a
// readonly database (8)") into what is wrong and what to do. SQLite needs to
// read and write the file and, in WAL mode, to create and write its -wal
// and -shm files next to it, so the directory must be writable too. ok is
// false for other errors.
func explainOpen(path string, err error) (msg string, ok bool) {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return "", false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
	default:
		return "", false
	}
	dir := filepath.Dir(path)
	who := fmt.Sprintf("this process (uid %d)", os.Getuid())
	fix := "fix the permissions (chown or chmod), run the server as their owner, or choose another --data-dir"
	problem := func() string {
		if e := unix.Access(dir, unix.W_OK|unix.X_OK); e != nil {
			if errors.Is(e, unix.EROFS) {
				return fmt.Sprintf("the data directory %s is on a read-only file system", dir)
			}
			return fmt.Sprintf("the data directory %s does not let %s create files in it (that takes write and search permission), and SQLite creates %s-wal and %s-shm there",
				dir, who, filepath.Base(path), filepath.Base(path))
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			if _, e := os.Stat(f); e != nil {
				continue
			}
			if e := unix.Access(f, unix.R_OK|unix.W_OK); e != nil {
				return fmt.Sprintf("%s is read-only for %s", filepath.Base(f), who)
			}
		}
		return fmt.Sprintf("SQLite cannot open or write it: check that %s can read and write the data directory %s and the files %s, %s-wal and %s-shm in it",
			who, dir, filepath.Base(path), filepath.Base(path), filepath.Base(path))
	}()
	return problem + ": " + fix, true
}
