package sshd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/tetherdev/tether/agent/usershell"
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
	proc    *usershell.Process // nil for a subsystem
	exited  chan struct{}      // closed when the subsystem has ended
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
		if s.proc != nil {
			if err := s.proc.Resize(s.size); err != nil {
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
		sig, ok := usershell.SignalByName(m.Signal)
		if !ok {
			return false
		}
		s.proc.Signal(sig)
		return true
	default:
		return false
	}
}

// start runs the user's shell: a login shell when command is empty,
// "SHELL -c command" otherwise (see usershell.Start).
func (s *session) start(command string) error {
	u, err := usershell.Current()
	if err != nil {
		return err
	}
	stderr := io.Writer(s.ch.Stderr())
	if s.ptyOK {
		stderr = nil
	}
	proc, err := usershell.Start(u, usershell.Spec{
		Command:          command,
		PTY:              s.ptyOK,
		Size:             s.size,
		Env:              func(tty string) []string { return s.environ(u, tty) },
		Stdout:           s.ch,
		Stderr:           stderr,
		BeforeOutputRead: s.conn.server.beforeOutputRead,
	})
	if err != nil {
		return err
	}
	s.started, s.proc = true, proc
	s.logger.Debug("session started", "pid", proc.Pid(), "pty", proc.TTY())
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// The client's EOF becomes the program's EOF. A PTY has no
		// half-close: stdin EOF from the client changes nothing, as with
		// OpenSSH, and the copy ends when the channel does.
		stdin := proc.Stdin()
		io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	go func() {
		defer s.wg.Done()
		st, err := proc.Wait()
		s.exit(st, err)
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
// request that started it. waitErr says why the status is unknown.
func (s *session) exit(st usershell.ExitStatus, waitErr error) {
	<-s.replied
	s.ch.CloseWrite()
	switch {
	case waitErr != nil:
		s.logger.Debug("session wait", "err", waitErr)
		s.sendExitStatus(255)
	case st.Signal != 0:
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(&exitSignalMsg{
			Signal:     usershell.SignalName(st.Signal),
			CoreDumped: st.CoreDumped,
		}))
	default:
		s.sendExitStatus(uint32(st.Code))
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
	s.proc.HangUp()
}

// environ builds the program's environment; see the package comment for
// the order. tty is the PTY's name, or "" without one.
func (s *session) environ(u *usershell.User, tty string) []string {
	return u.SessionEnviron(usershell.Session{
		Client:    s.env,
		Term:      s.term,
		Remote:    s.conn.sconn.RemoteAddr(),
		Local:     s.conn.sconn.LocalAddr(),
		AgentSock: s.agentSock,
		Extra:     s.conn.server.env,
	}, tty)
}

// clampSize turns an SSH window size into a PTY's, where 0 means unknown.
func clampSize(rows, cols uint32) usershell.Size {
	return usershell.Size{Rows: uint16(min(rows, 0xffff)), Cols: uint16(min(cols, 0xffff))}
}

func splitAddr(a net.Addr) (host, port string) {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "0"
	}
	return host, port
}
