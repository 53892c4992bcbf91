package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/coalesce"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

func (r *root) sshCommand() *cobra.Command {
	var (
		tf           tunnelFlags
		stdio        bool
		forwardAgent bool
		forceTTY     bool
	)
	cmd := &cobra.Command{
		Use:   "ssh WORKSPACE [-- COMMAND...]",
		Short: "Open a shell in a workspace, or run a command there",
		Long: "Open an interactive shell in a workspace, or run a command and pass its exit code through.\n\n" +
			"Shells and commands go over the tunnel without SSH's handshake, in one round trip; SSH is\n" +
			"used for --stdio and --forward-agent, with agents that are too old, and when\n" +
			"TETHER_SSH_PROTOCOL=ssh is set.\n\n" +
			"With --stdio the command speaks raw SSH on stdin/stdout, for OpenSSH's ProxyCommand:\n" +
			"  ssh -o ProxyCommand='tether ssh --stdio %h' dev\n" +
			"`tether config-ssh` writes that into ~/.ssh/config for every workspace.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			wsArg := strings.TrimPrefix(args[0], "tether.")
			command := strings.Join(args[1:], " ")
			if stdio && command != "" {
				return errors.New("--stdio takes no command: OpenSSH sends it")
			}
			t, err := r.dialWorkspace(ctx, wsArg, tf)
			if err != nil {
				return err
			}
			defer t.stop()
			if stdio {
				conn, err := r.dialSSH(ctx, t)
				if err != nil {
					return err
				}
				defer conn.Close()
				return r.pipeStdio(conn, t.gone)
			}
			return r.runSession(ctx, t, command, forwardAgent, forceTTY)
		},
	}
	tf.register(cmd)
	cmd.Flags().BoolVar(&stdio, "stdio", false, "speak SSH on stdin/stdout (for OpenSSH's ProxyCommand)")
	cmd.Flags().BoolVarP(&forwardAgent, "forward-agent", "A", false, "forward the local SSH agent ($SSH_AUTH_SOCK) to the workspace")
	cmd.Flags().BoolVarP(&forceTTY, "tty", "t", false, "allocate a terminal for a command, as for a shell")
	return cmd
}

// dialSSH connects to the agent's SSH server.
func (r *root) dialSSH(ctx context.Context, t *workspaceTunnel) (net.Conn, error) {
	end := t.tl.begin("dial")
	conn, err := t.dial(ctx, tether.AgentSSHPort)
	end()
	if err != nil {
		return nil, fmt.Errorf("connect to the workspace's SSH server: %w", err)
	}
	return conn, nil
}

// sessionTerminal is how a session meets the user's terminal.
type sessionTerminal struct {
	tty        bool // the session runs on a remote PTY
	lt         localTerminal
	cols, rows int
	term       string    // TERM for the remote PTY
	stdin      io.Reader // what the session reads: the raw terminal, or stdin
}

// openTerminal decides whether the session gets a PTY (an interactive
// shell, or -t on a terminal) and, if so, puts the local terminal in raw
// mode until restore.
func (r *root) openTerminal(command string, forceTTY bool) (st *sessionTerminal, restore func(), err error) {
	stdinFile, stdinIsFile := r.env.Stdin.(*os.File)
	interactive := stdinIsFile && term.IsTerminal(int(stdinFile.Fd()))
	if !interactive || (command != "" && !forceTTY) {
		return &sessionTerminal{stdin: stdinStream(r.env.Stdin)}, func() {}, nil
	}
	st = &sessionTerminal{}
	st.tty = true
	st.lt = localTerminal{in: stdinFile}
	if f, ok := r.env.Stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		st.lt.out = f
	}
	if st.cols, st.rows, err = st.lt.size(); err != nil {
		st.cols, st.rows = 80, 24
	}
	st.term = os.Getenv("TERM")
	if st.term == "" {
		st.term = "xterm-256color"
	}
	restore, err = st.lt.makeRaw()
	if err != nil {
		return nil, nil, fmt.Errorf("set terminal to raw mode: %w", err)
	}
	st.stdin = st.lt.input()
	return st, restore, nil
}

// runSession runs a shell or a command in the workspace: over the exec
// protocol (exec.go), or over SSH for agent forwarding, when
// TETHER_SSH_PROTOCOL=ssh asks for it, or when the agent does not serve
// the exec protocol.
func (r *root) runSession(ctx context.Context, t *workspaceTunnel, command string, forwardAgent, forceTTY bool) error {
	if forwardAgent && os.Getenv("SSH_AUTH_SOCK") == "" {
		return errors.New("--forward-agent: SSH_AUTH_SOCK is not set, so there is no local agent to forward")
	}
	st, restore, err := r.openTerminal(command, forceTTY)
	if err != nil {
		return err
	}
	defer restore()
	if !forwardAgent && r.env.Getenv(sshProtocolEnv) != "ssh" {
		end := t.tl.begin("dial")
		conn, err := t.dial(ctx, tether.AgentExecPort)
		end()
		switch {
		case err == nil:
			in := startInputPump(st.stdin)
			defer in.close()
			replay, err := r.runExec(ctx, conn, t.tl, t.gone, command, st, in)
			if !errors.Is(err, errNoExec) {
				return err
			}
			t.tl.mark("exec-unsupported")
			st.stdin = in.reader(replay)
		case ctx.Err() != nil || t.gone() != nil:
			return fmt.Errorf("connect to the workspace: %w", err)
		default:
			// Refused (an agent whose tunnel forwards nothing): SSH
			// may still answer, or says why not.
			t.tl.mark("exec-unsupported", "error", err.Error())
		}
	}
	conn, err := r.dialSSH(ctx, t)
	if err != nil {
		return err
	}
	defer conn.Close()
	return r.runSSH(ctx, conn, t.workspace, t.tl, t.gone, command, forwardAgent, st)
}

// pipeStdio copies between the SSH connection and stdin/stdout until the
// remote side closes. gone says why the tunnel ended the connection, if it
// did.
func (r *root) pipeStdio(conn net.Conn, gone func() error) error {
	go func() {
		copyStdio(conn, stdinStream(r.env.Stdin))
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	err := copyStdio(r.env.Stdout, conn)
	// A connection the tunnel ended reads as a plain EOF: only gone tells
	// it from the agent closing it.
	if gerr := gone(); gerr != nil {
		return gerr
	}
	return err
}

// SSH keepalives: every sshKeepaliveInterval the CLI asks the agent for a
// reply (keepalive@openssh.com, as OpenSSH's ServerAliveInterval does),
// and gives the session up when one has gone unanswered for
// sshKeepaliveTimeout. The tunnel notices a gone agent within seconds
// (tunnel.ErrPeerUnreachable, tunnel.ErrPeerRestarted); this catches the
// rest, such as an agent whose tunnel answers but whose SSH server does
// not. The timeout leaves room for what a live session must survive: a
// path moving from direct to the relay (~10 s without traffic) or a server
// restart while relayed, after which the request's retransmission may
// itself wait tens of seconds.
const (
	sshKeepaliveInterval = 15 * time.Second
	sshKeepaliveTimeout  = 60 * time.Second
)

// exitConnectionLost is the exit code when the session ends without an
// exit status, as OpenSSH's ssh exits 255 when the connection is lost.
const exitConnectionLost = 255

// keepAlive sends keepalives on conn until done is closed; if one goes
// unanswered for timeout, it tells lost why and closes conn, which ends
// the session.
func keepAlive(conn ssh.Conn, interval, timeout time.Duration, done <-chan struct{}, lost func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		wait := time.NewTimer(timeout)
		select {
		case err := <-replied:
			wait.Stop()
			if err != nil {
				return // the connection is closed
			}
		case <-wait.C:
			lost(fmt.Errorf("the workspace did not answer for %v", timeout))
			conn.Close()
			return
		case <-done:
			wait.Stop()
			return // the request ends when the connection closes
		}
	}
}

// runSSH runs a shell or a command over an SSH client connection. gone
// says why the tunnel ended the connection, if it did.
func (r *root) runSSH(ctx context.Context, conn net.Conn, ws tether.Workspace, tl *timeline, gone func() error, command string, forwardAgent bool, st *sessionTerminal) error {
	end := tl.begin("ssh-handshake")
	// Fewer, larger writes and reads for the tunnel (see package coalesce).
	sshConn, chans, reqs, err := ssh.NewClientConn(coalesce.New(conn, coalesce.Options{}), ws.Name, &ssh.ClientConfig{
		User: ws.Owner,
		// The tunnel has authenticated the agent already: its WireGuard
		// key is the one the coordinator introduced.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         30 * time.Second,
	})
	end()
	if err != nil {
		return fmt.Errorf("SSH handshake with the workspace: %w", err)
	}
	sc := ssh.NewClient(sshConn, chans, reqs)
	defer sc.Close()
	end = tl.begin("ssh-session")
	sess, err := sc.NewSession()
	end()
	if err != nil {
		return fmt.Errorf("open SSH session: %w", err)
	}
	defer sess.Close()

	if forwardAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if err := agent.ForwardToRemote(sc, sock); err != nil {
			return fmt.Errorf("forward SSH agent: %w", err)
		}
		if err := agent.RequestAgentForwarding(sess); err != nil {
			return fmt.Errorf("forward SSH agent: %w", err)
		}
	}

	wantTTY := st.tty
	// Requests that need no answer go without waiting for one: each
	// answer costs a round trip to the workspace (Session.Setenv and
	// RequestPty wait for theirs), and the command's start, which does
	// wait, comes after them in order anyway.
	for _, k := range []string{"LANG", "LC_ALL", "LC_CTYPE", "COLORTERM"} {
		if v := os.Getenv(k); v != "" {
			// The server may refuse; that is fine.
			if _, err := sess.SendRequest("env", false, ssh.Marshal(&envRequest{Name: k, Value: v})); err != nil {
				return fmt.Errorf("open SSH session: %w", err)
			}
		}
	}
	sess.Stdin, sess.Stdout, sess.Stderr = st.stdin, sessionOutput{r.env.Stdout}, sessionOutput{r.env.Stderr}

	if wantTTY {
		// The agent grants every terminal request; if one failed, the
		// shell's start would, and say so.
		if _, err := sess.SendRequest("pty-req", false, ptyRequest(st.term, st.rows, st.cols, ssh.TerminalModes{ssh.ECHO: 1})); err != nil {
			return fmt.Errorf("request terminal: %w", err)
		}
		stopResize := st.lt.watchSize([2]int{st.cols, st.rows}, func(cols, rows int) { sess.WindowChange(rows, cols) })
		defer stopResize()
	}

	end = tl.begin("ssh-start")
	if command == "" {
		err = sess.Shell()
	} else {
		err = sess.Start(command)
	}
	end()
	if err != nil {
		return fmt.Errorf("start remote command: %w", err)
	}
	var (
		lostMu  sync.Mutex
		lostErr error
	)
	stopKeepalive := make(chan struct{})
	defer close(stopKeepalive)
	go keepAlive(sshConn, sshKeepaliveInterval, sshKeepaliveTimeout, stopKeepalive, func(err error) {
		lostMu.Lock()
		lostErr = err
		lostMu.Unlock()
	})
	done := make(chan error, 1)
	end = tl.begin("ssh-wait")
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
		end()
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		return ctx.Err()
	}
	var (
		exit    *ssh.ExitError
		missing *ssh.ExitMissingError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit):
		if exit.Signal() != "" {
			return &exitError{code: 128 + signalNumber(exit.Signal())}
		}
		return &exitError{code: exit.ExitStatus()}
	case errors.As(err, &missing):
		// Never success: the command's fate is unknown.
		why := gone()
		lostMu.Lock()
		if why == nil {
			why = lostErr
		}
		lostMu.Unlock()
		if why == nil {
			why = errors.New("the workspace closed the session without an exit status")
		}
		nl := "\n"
		if wantTTY {
			nl = "\r\n" // the terminal is still raw
		}
		fmt.Fprintf(r.env.Stderr, "tether: %v%s", why, nl)
		return &exitError{code: exitConnectionLost}
	}
	return err
}

// envRequest is the payload of an "env" request (RFC 4254 section 6.4).
type envRequest struct {
	Name, Value string
}

// ptyRequest is the payload of a "pty-req" request (RFC 4254 section 6.2),
// as ssh.Session.RequestPty makes it.
func ptyRequest(term string, rows, cols int, modes ssh.TerminalModes) []byte {
	var ml []byte
	for k, v := range modes {
		ml = append(ml, ssh.Marshal(&struct {
			Key byte
			Val uint32
		}{k, v})...)
	}
	ml = append(ml, 0) // TTY_OP_END
	return ssh.Marshal(&struct {
		Term                         string
		Columns, Rows, Width, Height uint32
		Modelist                     string
	}{term, uint32(cols), uint32(rows), uint32(cols * 8), uint32(rows * 8), string(ml)})
}

// signalNumber maps an SSH signal name to its number, for the shell's
// 128+N exit code convention.
func signalNumber(name string) int {
	switch ssh.Signal(name) {
	case ssh.SIGHUP:
		return 1
	case ssh.SIGINT:
		return 2
	case ssh.SIGQUIT:
		return 3
	case ssh.SIGKILL:
		return 9
	case ssh.SIGPIPE:
		return 13
	case ssh.SIGTERM:
		return 15
	}
	return 0
}
