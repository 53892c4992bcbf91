package sshd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/tetherdev/tether/agent/usershell"
	"github.com/tetherdev/tether/internal/coalesce"
)

// Payloads of session channel requests (RFC 4254 section 6).
type (
	ptyRequestMsg struct {
		Term     string
		Columns  uint32
		Rows     uint32
		Width    uint32
		Height   uint32
		Modelist string
	}
	windowChangeMsg struct {
		Columns uint32
		Rows    uint32
		Width   uint32
		Height  uint32
	}
	envRequestMsg struct {
		Name  string
		Value string
	}
	execMsg struct {
		Command string
	}
	subsystemMsg struct {
		Name string
	}
	signalMsg struct {
		Signal string
	}
	exitStatusMsg struct {
		Status uint32
	}
	exitSignalMsg struct {
		Signal     string
		CoreDumped bool
		Error      string
		Lang       string
	}
)

// session is one "session" channel: a shell, a command, or a subsystem.
// Its requests are handled in order on one goroutine (handleSession); the
// program runs on others, which end before handleSession returns.
type session struct {
	conn   *conn
	logger *slog.Logger
	ch     ssh.Channel

	// Set by requests before the program starts; read-only after.
	env       []string
	term      string
	ptyOK     bool // a pty-req was accepted
	size      usershell.Size
	agentSock string

	// Set when the program starts, on the request goroutine.
	started bool
	ptmx    *os.File      // with a PTY; closed by run
	proc    *os.Process   // nil for a subsystem
	exited  chan struct{} // closed when the program has ended and been reaped
	// replied is closed once the request that started the program has
	// been answered. The end of the session (EOF, exit status, close)
	// waits for it: a program that exits at once would otherwise close
	// the channel before the answer, and the client would see its exec
	// request fail ("EOF") for a command that ran.
	replied     chan struct{}
	repliedOnce sync.Once
	wg          sync.WaitGroup
}

func (c *conn) handleSession(nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	s := &session{
		conn:    c,
		logger:  c.logger,
		ch:      ch,
		exited:  make(chan struct{}),
		replied: make(chan struct{}),
	}
	for req := range reqs {
		wasStarted := s.started
		ok := s.handleRequest(req)
		starting := s.started && !wasStarted
		if hook := c.server.beforeStartReply; hook != nil && starting {
			hook()
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if starting {
			s.repliedOnce.Do(func() { close(s.replied) })
		}
	}
	s.repliedOnce.Do(func() { close(s.replied) })
	// The channel is closed, by the client or with the connection: end the
	// program if it is still running.
	s.hangUp()
	s.wg.Wait()
	ch.Close()
}

// handleRequest acts on one channel request and says whether it succeeded.
func (s *session) handleRequest(req *ssh.Request) bool {
	switch req.Type {
	case "pty-req":
		var m ptyRequestMsg
		if s.started || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		s.ptyOK = true
		s.term = m.Term
		s.size = clampSize(m.Rows, m.Columns)
		return true
	case "window-change":
		var m windowChangeMsg
		if !s.ptyOK || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		s.size = clampSize(m.Rows, m.Columns)
		if s.ptmx != nil {
			if err := usershell.SetSize(s.ptmx, s.size); err != nil {
				s.logger.Debug("resize pty", "err", err)
			}
		}
		return true
	case "env":
		var m envRequestMsg
		if s.started || ssh.Unmarshal(req.Payload, &m) != nil || m.Name == "" {
			return false
		}
		s.env = append(s.env, m.Name+"="+m.Value)
		return true
	case "auth-agent-req@openssh.com":
		if s.started {
			return false
		}
		sock, err := s.conn.agentSocket()
		if err != nil {
			s.logger.Warn("agent forwarding", "err", err)
			return false
		}
		s.agentSock = sock
		return true
	case "shell", "exec":
		var m execMsg
		if s.started {
			return false
		}
		if req.Type == "exec" && ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		if err := s.start(m.Command); err != nil {
			s.logger.Warn("start session", "err", err)
			return false
		}
		return true
	case "subsystem":
		var m subsystemMsg
		if s.started || ssh.Unmarshal(req.Payload, &m) != nil || m.Name != "sftp" {
			return false
		}
		if err := s.startSFTP(); err != nil {
			s.logger.Warn("start sftp", "err", err)
			return false
		}
		return true
	case "signal":
		var m signalMsg
		if s.proc == nil || ssh.Unmarshal(req.Payload, &m) != nil {
			return false
		}
		sig, ok := signalByName(m.Signal)
		if !ok {
			return false
		}
		// The whole process group: the shell's children get it too, as
		// they would from a terminal.
		syscall.Kill(-s.proc.Pid, sig)
		return true
	default:
		return false
	}
}

// start runs the user's shell: a login shell when command is empty,
// "SHELL -c command" otherwise.
func (s *session) start(command string) error {
	u, err := usershell.Current()
	if err != nil {
		return err
	}
	cmd := u.Command(command)

	if s.ptyOK {
		return s.startPTY(cmd, u)
	}
	return s.startPipes(cmd, u)
}

func (s *session) startPTY(cmd *exec.Cmd, u *usershell.User) error {
	ptmx, tty, err := usershell.OpenPTY(s.size)
	if err != nil {
		return err
	}
	defer tty.Close()
	cmd.Env = s.environ(u, tty.Name())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	// A new session with the PTY as its controlling terminal, so that job
	// control and ^C work, and so that the group can be signalled at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		ptmx.Close()
		return fmt.Errorf("start shell: %w", err)
	}
	s.started, s.ptmx, s.proc = true, ptmx, cmd.Process
	s.logger.Debug("session started", "pid", cmd.Process.Pid, "pty", tty.Name())

	out := copyOutput(&s.wg, s.ch, ptmx, s.conn.server.beforeOutputRead)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// A PTY has no half-close: stdin EOF from the client changes
		// nothing, as with OpenSSH. The copy ends when the channel does.
		io.Copy(ptmx, s.ch)
	}()
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		// The kernel hands over what is buffered and then EIO once no
		// process holds the terminal; see usershell.DrainOutput for a
		// background process that holds it.
		usershell.DrainOutput(ptmx, out, outputGrace)
		ptmx.Close()
		close(s.exited)
		s.exit(cmd.ProcessState, err)
	}()
	return nil
}

func (s *session) startPipes(cmd *exec.Cmd, u *usershell.User) error {
	cmd.Env = s.environ(u, "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Pipes of our own rather than exec's: Wait would cut exec's copies
	// short (WaitDelay) or wait for background processes holding them.
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		stdoutR.Close()
		stdoutW.Close()
		return fmt.Errorf("stderr pipe: %w", err)
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
		return fmt.Errorf("stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		closeAll()
		return fmt.Errorf("start shell: %w", err)
	}
	stdoutW.Close()
	stderrW.Close()
	s.started, s.proc = true, cmd.Process
	s.logger.Debug("session started", "pid", cmd.Process.Pid)

	stdout := copyOutput(&s.wg, s.ch, stdoutR, s.conn.server.beforeOutputRead)
	stderr := copyOutput(&s.wg, s.ch.Stderr(), stderrR, s.conn.server.beforeOutputRead)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// The client's EOF becomes the program's EOF.
		io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	go func() {
		defer s.wg.Done()
		err := cmd.Wait()
		// All of the program's output is in the pipes now; the copies
		// deliver it before the exit status goes out.
		var drains sync.WaitGroup
		drains.Go(func() { usershell.DrainOutput(stdoutR, stdout, outputGrace) })
		drains.Go(func() { usershell.DrainOutput(stderrR, stderr, outputGrace) })
		drains.Wait()
		stdoutR.Close()
		stderrR.Close()
		close(s.exited)
		s.exit(cmd.ProcessState, err)
	}()
	return nil
}

// startSFTP serves SFTP on the channel, rooted at the user's home.
func (s *session) startSFTP() error {
	u, err := usershell.Current()
	if err != nil {
		return err
	}
	// Large reads and writes for OpenSSH's clients (see sftpLimits).
	srv, err := sftp.NewServer(newSFTPLimits(s.ch), sftp.WithServerWorkingDirectory(u.Home), sftp.WithMaxTxPacket(sftpMaxData))
	if err != nil {
		return fmt.Errorf("sftp server: %w", err)
	}
	s.started = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Serve closes the files it opened. srv.Close is not called: it
		// would close the channel before the exit status that scp waits for.
		var code uint32
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			s.logger.Debug("sftp ended", "err", err)
			code = 1
		}
		close(s.exited)
		<-s.replied
		s.ch.CloseWrite()
		s.sendExitStatus(code)
		s.ch.Close()
	}()
	return nil
}

// exit reports how the program ended, as OpenSSH's sshd does: EOF, then
// exit-status or exit-signal, then close; all after the answer to the
// request that started it.
func (s *session) exit(state *os.ProcessState, waitErr error) {
	<-s.replied
	s.ch.CloseWrite()
	var ws syscall.WaitStatus
	ok := false
	if state != nil {
		ws, ok = state.Sys().(syscall.WaitStatus)
	}
	switch {
	case !ok:
		s.logger.Debug("session wait", "err", waitErr)
		s.sendExitStatus(255)
	case ws.Signaled():
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(&exitSignalMsg{
			Signal:     signalName(ws.Signal()),
			CoreDumped: ws.CoreDump(),
		}))
	default:
		s.sendExitStatus(uint32(ws.ExitStatus()))
	}
	s.ch.Close()
}

func (s *session) sendExitStatus(code uint32) {
	s.ch.SendRequest("exit-status", false, ssh.Marshal(&exitStatusMsg{Status: code}))
}

// hangUp ends the program of a session whose channel is gone: SIGHUP to
// its process group, as a terminal hang-up does, then SIGKILL if it is
// still running after usershell.HangUpGrace. It returns when the program has ended.
func (s *session) hangUp() {
	if !s.started {
		return
	}
	if s.proc == nil {
		// SFTP: the closed channel ends it.
		<-s.exited
		return
	}
	usershell.HangUp(s.proc.Pid, s.exited)
	<-s.exited
}

// environ builds the program's environment; see the package comment for
// the order. tty is the PTY's name, or "" without one.
func (s *session) environ(u *usershell.User, tty string) []string {
	env := usershell.Setenv(u.Environ(), s.env...)
	if s.ptyOK {
		term := s.term
		if term == "" {
			term = "xterm-256color"
		}
		env = usershell.Setenv(env, "TERM="+term, "SSH_TTY="+tty)
	}
	sconn := s.conn.sconn
	rhost, rport := splitAddr(sconn.RemoteAddr())
	lhost, lport := splitAddr(sconn.LocalAddr())
	env = usershell.Setenv(env,
		"SSH_CONNECTION="+rhost+" "+rport+" "+lhost+" "+lport,
		"SSH_CLIENT="+rhost+" "+rport+" "+lport,
		"TETHER=true",
	)
	if s.agentSock != "" {
		env = usershell.Setenv(env, "SSH_AUTH_SOCK="+s.agentSock)
	}
	return usershell.Setenv(env, s.conn.server.env...)
}

func splitAddr(a net.Addr) (host, port string) {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return host, port
}

// clampSize turns an SSH window size into a PTY's, where 0 means unknown.
func clampSize(rows, cols uint32) usershell.Size {
	return usershell.Size{Rows: uint16(min(rows, 0xffff)), Cols: uint16(min(cols, 0xffff))}
}
