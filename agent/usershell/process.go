package usershell

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/tetherdev/tether/internal/coalesce"
)

// A session's program, as a remote login starts it: the agent's SSH server
// (agent/sshd) and its exec server (agent/execd) both start commands and
// shells through Start, so that a command behaves the same whichever way
// `tether ssh` reached it.

// OutputGrace is how long after its program exits a session waits for the
// end of its output before a background process that inherited the output
// (`sleep 100 &`) no longer holds the session open. Output still queued is
// delivered whatever the wait (see DrainOutput).
const OutputGrace = time.Second

// outputBufSize is the most one read of a program's output passes on, as
// one write to the session (several packets, which the connection writes
// to the tunnel together; see package coalesce).
const outputBufSize = 128 << 10

// Spec says what program a session starts, and where its output goes.
type Spec struct {
	// Command is run as "SHELL -c Command"; empty starts a login shell.
	Command string
	// PTY runs the program on a new pseudo-terminal of Size, as its
	// controlling terminal; its output then all goes to Stdout.
	PTY  bool
	Size Size
	// Env is the program's environment given the name of its terminal
	// ("" without one); see SessionEnviron for a session's.
	Env func(tty string) []string
	// Stdout and Stderr receive the program's output, each from a
	// goroutine of its own. Stderr is unused with a PTY. A write that
	// fails ends that copy.
	Stdout, Stderr io.Writer
	// BeforeOutputRead, when set, runs before every read of the output
	// with the number of reads that copy has done; tests use it to starve
	// the copies.
	BeforeOutputRead func(reads int)
}

// Session says what a session's environment holds besides the user's own
// (User.Environ); SessionEnviron puts it together.
type Session struct {
	// Client is what the client asked to set ("KEY=value"), such as LANG.
	Client []string
	// Term is the terminal type with a PTY; "" means xterm-256color.
	Term string
	// Remote and Local are the connection's addresses, for SSH_CONNECTION
	// and SSH_CLIENT, which programs read to know that they run for a
	// remote login (bash sources ~/.bashrc for them, for one).
	Remote, Local net.Addr
	// AgentSock is the forwarded SSH agent's socket, if any.
	AgentSock string
	// Extra is set last, over everything else ("TETHER_WORKSPACE=dev").
	Extra []string
}

// SessionEnviron is the environment of a session's program: the user's (the
// agent's own, then USER, LOGNAME, HOME and SHELL), then what the client
// asked for, then what the server decides and the client cannot
// override: TERM and SSH_TTY with a terminal (tty, its name, not ""),
// SSH_CONNECTION, SSH_CLIENT, TETHER=true, SSH_AUTH_SOCK and Extra.
func (u *User) SessionEnviron(s Session, tty string) []string {
	env := Setenv(u.Environ(), s.Client...)
	if tty != "" {
		term := s.Term
		if term == "" {
			term = "xterm-256color"
		}
		env = Setenv(env, "TERM="+term, "SSH_TTY="+tty)
	}
	rhost, rport := splitAddr(s.Remote)
	lhost, lport := splitAddr(s.Local)
	env = Setenv(env,
		"SSH_CONNECTION="+rhost+" "+rport+" "+lhost+" "+lport,
		"SSH_CLIENT="+rhost+" "+rport+" "+lport,
		"TETHER=true",
	)
	if s.AgentSock != "" {
		env = Setenv(env, "SSH_AUTH_SOCK="+s.AgentSock)
	}
	return Setenv(env, s.Extra...)
}

func splitAddr(a net.Addr) (host, port string) {
	if a == nil {
		return "", "0"
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return host, port
}

// Process is a running session program. Wait must be called once.
type Process struct {
	pid    int
	cmd    *exec.Cmd
	tty    string         // the terminal's name, or ""
	ptmx   *os.File       // with a PTY; closed by Wait
	stdin  io.WriteCloser // the program's stdin: the PTY master, or a pipe
	outs   []*os.File     // the reading sides of the output, closed by Wait
	copies []<-chan struct{}
	exited chan struct{} // closed by Wait once the program is reaped and its output delivered
}

// Start starts the user's shell as spec says, in a session (and process
// group) of its own, and copies its output on goroutines that end before
// Wait returns.
func Start(u *User, spec Spec) (*Process, error) {
	cmd := u.Command(spec.Command)
	if spec.PTY {
		return startPTY(cmd, spec)
	}
	return startPipes(cmd, spec)
}

func startPTY(cmd *exec.Cmd, spec Spec) (*Process, error) {
	ptmx, tty, err := OpenPTY(spec.Size)
	if err != nil {
		return nil, err
	}
	defer tty.Close()
	cmd.Env = spec.Env(tty.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// A new session with the PTY as its controlling terminal, so that job
	// control and ^C work, and so that the group can be signalled at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("start shell: %w", err)
	}
	p := &Process{pid: cmd.Process.Pid, cmd: cmd, tty: tty.Name(), ptmx: ptmx, stdin: ptmx,
		outs: []*os.File{ptmx}, exited: make(chan struct{})}
	p.copies = []<-chan struct{}{copyOutput(spec.Stdout, ptmx, spec.BeforeOutputRead)}
	return p, nil
}

func startPipes(cmd *exec.Cmd, spec Spec) (*Process, error) {
	cmd.Env = spec.Env("")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Pipes of our own rather than exec's: Wait would cut exec's copies
	// short (WaitDelay) or wait for background processes holding them.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	closeAll := func() {
		for _, f := range []*os.File{stdoutR, stdoutW, stderrR, stderrW} {
			f.Close()
		}
	}
	coalesce.GrowPipe(stdoutW) // bulk output moves in fewer, larger reads
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	stdin, err := cmd.StdinPipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, fmt.Errorf("start shell: %w", err)
	}
	stdoutW.Close()
	stderrW.Close()
	p := &Process{pid: cmd.Process.Pid, cmd: cmd, stdin: stdin,
		outs: []*os.File{stdoutR, stderrR}, exited: make(chan struct{})}
	p.copies = []<-chan struct{}{
		copyOutput(spec.Stdout, stdoutR, spec.BeforeOutputRead),
		copyOutput(spec.Stderr, stderrR, spec.BeforeOutputRead),
	}
	return p, nil
}

// Pid is the program's process id, which is also its process group's.
func (p *Process) Pid() int { return p.pid }

// TTY is the name of the program's terminal, or "" without one.
func (p *Process) TTY() string { return p.tty }

// Stdin is the program's input. With a PTY it is the terminal, which has
// no end of input: closing it does nothing, as with OpenSSH, since the
// terminal's master stays the output's until Wait.
func (p *Process) Stdin() io.WriteCloser {
	if p.ptmx != nil {
		return ptyInput{p.ptmx}
	}
	return p.stdin
}

// ptyInput writes to a PTY master and leaves closing it to Wait.
type ptyInput struct{ f *os.File }

func (w ptyInput) Write(b []byte) (int, error) { return w.f.Write(b) }
func (ptyInput) Close() error                  { return nil }

// Resize sets the terminal's size; without a PTY it does nothing.
func (p *Process) Resize(size Size) error {
	if p.ptmx == nil {
		return nil
	}
	return SetSize(p.ptmx, size)
}

// Signal sends sig to the program's process group: the shell's children
// get it too, as they would from a terminal. A program already reaped is
// left alone, since its pid may belong to another by now.
func (p *Process) Signal(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	syscall.Kill(-p.pid, sig)
}

// Exited is closed once Wait has seen the program end and its output
// delivered.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// HangUp ends the program as a terminal hang-up does (see HangUp) and
// returns once Wait has seen it end. Wait must be running.
func (p *Process) HangUp() {
	HangUp(p.pid, p.exited)
	<-p.exited
}

// Wait waits for the program to exit and for its output to be delivered
// (DrainOutput's rule, with OutputGrace), and returns how it ended; the
// error says why that is unknown. Every goroutine of p has ended when it
// returns.
func (p *Process) Wait() (ExitStatus, error) {
	err := p.cmd.Wait()
	// All of the program's output is in the pipes or the terminal now;
	// the copies deliver it before the caller reports the exit. A PTY's
	// kernel side hands over what is buffered and then EIO once no
	// process holds the terminal.
	var drains sync.WaitGroup
	for i, out := range p.outs {
		drains.Go(func() { DrainOutput(out, p.copies[i], OutputGrace) })
	}
	drains.Wait()
	for _, out := range p.outs {
		out.Close()
	}
	close(p.exited)
	st, ok := statusOf(p.cmd.ProcessState)
	if !ok {
		if err == nil {
			err = fmt.Errorf("no exit status")
		}
		return ExitStatus{}, err
	}
	return st, nil
}

// ExitStatus is how a program ended: with an exit code, or killed by a
// signal.
type ExitStatus struct {
	Code       int            // when Signal is 0
	Signal     syscall.Signal // the signal that killed it, or 0
	CoreDumped bool
}

func statusOf(state *os.ProcessState) (ExitStatus, bool) {
	if state == nil {
		return ExitStatus{}, false
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok {
		return ExitStatus{}, false
	}
	if ws.Signaled() {
		return ExitStatus{Signal: ws.Signal(), CoreDumped: ws.CoreDump()}, true
	}
	return ExitStatus{Code: ws.ExitStatus()}, true
}

// copyOutput starts copying r, a program's output (a PTY master or a
// pipe), to w on a goroutine. The returned channel is closed when the copy
// has ended: at the end of the output, at the first error, or when the
// client stopped taking data. DrainOutput decides, once the program has
// exited, whether the copy may be cut short.
//
// While the output streams, the copy gathers the program's small writes
// into larger ones (coalesce.StreamReader); an echoed keystroke or a
// prompt goes out at once.
func copyOutput(w io.Writer, r *os.File, beforeRead func(reads int)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		sr := coalesce.NewStreamReader(r)
		buf := make([]byte, outputBufSize)
		for reads := 0; ; reads++ {
			if beforeRead != nil {
				beforeRead(reads)
			}
			n, err := sr.Read(buf)
			if n > 0 {
				if _, err := w.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return done
}
