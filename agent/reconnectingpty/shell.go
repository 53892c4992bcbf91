package reconnectingpty

import (
	"bufio"
	"fmt"
	"os"
	"os/user"
	"strings"
	"syscall"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// The helpers in this file are copies of those in agent/sshd; both
// packages start the user's shell on a PTY the same way. They belong in a
// shared agent package once one exists for them.

type winsize struct{ rows, cols uint16 }

// userInfo is what a session needs to know about the user it runs as.
type userInfo struct {
	name  string
	home  string
	shell string
}

// currentUser describes the user running the agent. It is looked up for
// each session, so a changed login shell applies to the next session.
func currentUser() (*userInfo, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	return &userInfo{
		name:  u.Username,
		home:  u.HomeDir,
		shell: loginShell(u.Username),
	}, nil
}

// loginShell returns the user's shell from /etc/passwd, or /bin/sh. The
// standard library's user package does not expose the shell.
func loginShell(name string) string {
	const fallback = "/bin/sh"
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return fallback
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name && fields[6] != "" {
			return fields[6]
		}
	}
	return fallback
}

// setenv returns env with each "KEY=value" of kvs set, replacing any
// earlier value of the same key.
func setenv(env []string, kvs ...string) []string {
	for _, kv := range kvs {
		key, _, _ := strings.Cut(kv, "=")
		env = deleteKey(env, key)
		env = append(env, kv)
	}
	return env
}

func deleteKey(env []string, key string) []string {
	out := env[:0]
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != key {
			out = append(out, kv)
		}
	}
	return out
}

// openPTY opens a PTY pair of the given size. The master is in
// non-blocking mode under Go's poller so that closing it interrupts a
// blocked Read: creack/pty leaves it blocking (its ioctls call Fd), and a
// reader stuck on a terminal that a background process holds open would
// then never end.
func openPTY(size winsize) (ptmx, tty *os.File, err error) {
	p, t, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	fd, err := syscall.Dup(int(p.Fd()))
	p.Close()
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("dup pty: %w", err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		t.Close()
		return nil, nil, fmt.Errorf("pty non-blocking: %w", err)
	}
	ptmx = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := setWinsize(ptmx, size); err != nil {
		ptmx.Close()
		t.Close()
		return nil, nil, err
	}
	return ptmx, t, nil
}

// setWinsize sets a PTY's window size, and so sends SIGWINCH to its
// foreground process group. A zero size is left alone.
func setWinsize(ptmx *os.File, size winsize) error {
	if size.rows == 0 || size.cols == 0 {
		return nil
	}
	rc, err := ptmx.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.rows, Col: size.cols})
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	return nil
}
