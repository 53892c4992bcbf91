// Package usershell starts programs the way a login on the workspace would:
// as the user running the agent, in their home directory, with their login
// shell, optionally on a pseudo-terminal. The SSH server, the exec server
// and the web terminal's reconnecting PTY all start sessions through it;
// the first two through Start (process.go), so that a command runs the
// same whichever of them `tether ssh` reached.
package usershell

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// User is what a session needs to know about the user it runs as.
type User struct {
	Name  string
	Home  string
	Shell string
}

// Current describes the user running the agent. It is looked up for each
// session, so a changed login shell applies to the next session.
func Current() (*User, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	return &User{
		Name:  u.Username,
		Home:  u.HomeDir,
		Shell: loginShell(u.Username),
	}, nil
}

// Command returns the user's shell: a login shell when command is empty,
// "SHELL -c command" otherwise, in the user's home directory (or / when it
// is missing). Its environment is left for the caller to set.
func (u *User) Command(command string) *exec.Cmd {
	var cmd *exec.Cmd
	if command == "" {
		cmd = exec.Command(u.Shell)
		// A leading "-" in argv[0] is how a shell knows it is a login shell.
		cmd.Args = []string{"-" + filepath.Base(u.Shell)}
	} else {
		cmd = exec.Command(u.Shell, "-c", command)
		cmd.Args[0] = filepath.Base(u.Shell)
	}
	cmd.Dir = u.Home
	if st, err := os.Stat(u.Home); err != nil || !st.IsDir() {
		cmd.Dir = "/"
	}
	return cmd
}

// Environ is the base environment of a session: the agent's own, then
// the user's identity.
func (u *User) Environ() []string {
	return Setenv(os.Environ(), "USER="+u.Name, "LOGNAME="+u.Name, "HOME="+u.Home, "SHELL="+u.Shell)
}

// loginShell returns the user's login shell: from /etc/passwd, where Linux
// keeps it, or on macOS, where /etc/passwd lists only system accounts and
// people's accounts live in Directory Services, from dscl. /bin/sh when
// neither knows.
func loginShell(name string) string {
	if sh := passwdShell("/etc/passwd", name); sh != "" {
		return sh
	}
	if runtime.GOOS == "darwin" {
		if sh := directoryShell(name); sh != "" {
			return sh
		}
	}
	return "/bin/sh"
}

// passwdShell returns name's shell from the passwd file at path, or "".
// The standard library's user package does not expose the shell.
func passwdShell(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) == 7 && fields[0] == name && fields[6] != "" {
			return fields[6]
		}
	}
	return ""
}

// directoryShell asks macOS's Directory Services for name's shell, or "".
// A session waits for it, so it gets a few seconds at most.
func directoryShell(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/dscl", ".", "-read", "/Users/"+name, "UserShell").Output()
	if err != nil {
		return ""
	}
	return parseUserShell(string(out))
}

// parseUserShell reads dscl's answer, "UserShell: /bin/zsh" (or, for a
// value with a space, "UserShell:" and the value on the next line), or ""
// when it names no absolute path.
func parseUserShell(out string) string {
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		v, ok := strings.CutPrefix(line, "UserShell:")
		if !ok {
			continue
		}
		sh := strings.TrimSpace(v)
		if sh == "" && i+1 < len(lines) {
			sh = strings.TrimSpace(lines[i+1])
		}
		if filepath.IsAbs(sh) {
			return sh
		}
		return ""
	}
	return ""
}

// Setenv returns env with each "KEY=value" of kvs set, replacing any
// earlier value of the same key.
func Setenv(env []string, kvs ...string) []string {
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

// Size is a terminal's size; zero means unknown.
type Size struct{ Rows, Cols uint16 }

// OpenPTY opens a PTY pair of the given size. The master is in
// non-blocking mode under Go's poller so that closing it interrupts a
// blocked Read: creack/pty leaves it blocking (its ioctls call Fd), and a
// reader stuck on a terminal that a background process holds open would
// then never end.
func OpenPTY(size Size) (ptmx, tty *os.File, err error) {
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
	if err := SetSize(ptmx, size); err != nil {
		ptmx.Close()
		t.Close()
		return nil, nil, err
	}
	return ptmx, t, nil
}

// SetSize sets a PTY's window size, and so sends SIGWINCH to its
// foreground process group. A zero size is left alone.
func SetSize(ptmx *os.File, size Size) error {
	if size.Rows == 0 || size.Cols == 0 {
		return nil
	}
	rc, err := ptmx.SyscallConn()
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Rows, Col: size.Cols})
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	return nil
}

// HangUpGrace is how long a hung-up session's processes have to exit before
// they are killed.
const HangUpGrace = 2 * time.Second

// HangUp ends the process group led by pid as a terminal hang-up does:
// SIGHUP, then SIGKILL if exited is not closed within HangUpGrace. It
// returns once exited is closed or the group was killed; a process already
// reaped is left alone, since its pid may belong to another by now.
func HangUp(pid int, exited <-chan struct{}) {
	select {
	case <-exited:
		return
	default:
	}
	syscall.Kill(-pid, syscall.SIGHUP)
	t := time.NewTimer(HangUpGrace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}
