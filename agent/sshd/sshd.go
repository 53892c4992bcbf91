// Package sshd is the workspace agent's SSH server: interactive shells and
// commands (with or without a PTY), SFTP (so scp and sftp work), local and
// reverse TCP forwarding, and SSH agent forwarding.
//
// The server accepts every client without a password or key. It only ever
// serves on a listener inside the tunnel, which has already authenticated
// and authorized the peer (as Coder's agent does); exposing it on any other
// listener would give a shell to anyone who connects.
//
// Sessions run as the user that runs the agent, in the user's home
// directory, with the login shell from /etc/passwd (/bin/sh when there is
// none). A shell request starts a login shell; an exec request runs
// "SHELL -c COMMAND". The session's environment is the agent's own, then
// USER, LOGNAME, HOME and SHELL, then the client's env requests, then what
// the server decides and the client cannot override: TERM (with a PTY),
// SSH_CONNECTION, SSH_CLIENT, SSH_TTY, SSH_AUTH_SOCK, TETHER=true and
// Options.Env. The agent should therefore drop its own secrets (its token)
// from its environment before it starts the server.
//
// The host key is an Ed25519 key. New generates one when the caller gives
// none, so clients see a new host key each time the agent starts; an agent
// that wants a stable key generates one with GenerateHostKey, persists it
// (ssh.MarshalPrivateKey), and passes it in Options.HostKey.
package sshd

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tetherdev/tether/internal/coalesce"
	"github.com/tetherdev/tether/internal/servegroup"
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("sshd: server closed")

// Timeouts that bound what a peer can hold open without doing anything
// useful. They are not options: nobody has needed to change them.
const (
	// handshakeTimeout bounds the SSH handshake, so that a peer that
	// connects and says nothing does not hold a goroutine forever.
	handshakeTimeout = 30 * time.Second
	// dialTimeout bounds a direct-tcpip dial.
	dialTimeout = 30 * time.Second
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// HostKey signs handshakes; it should be an Ed25519 key. Nil means a
	// new key from GenerateHostKey.
	HostKey crypto.Signer
	// Env is added to every session's environment ("KEY=value"), after
	// everything else, e.g. "TETHER_WORKSPACE=dev".
	Env []string
	// Dial opens direct-tcpip (local forwarding) connections. Nil means a
	// net.Dialer, which reaches whatever the workspace can reach.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen opens reverse (tcpip-forward) listeners. Nil means
	// net.ListenConfig.Listen.
	Listen func(ctx context.Context, network, addr string) (net.Listener, error)
}

// Server is an SSH server. Its methods are safe for concurrent use.
type Server struct {
	logger *slog.Logger
	config *ssh.ServerConfig
	signer ssh.Signer
	env    []string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	listen func(ctx context.Context, network, addr string) (net.Listener, error)
	// beforeOutputRead, when set, runs before every read of a session's
	// output (usershell.Spec.BeforeOutputRead). Tests set it (export_test.go) to starve
	// the copies.
	beforeOutputRead func(reads int)
	// beforeStartReply, when set, runs before the answer to a request that
	// started a program. Tests set it to delay the answer.
	beforeStartReply func()

	// ctx is canceled by Close; every connection's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// group holds the listeners and connections and counts every
	// goroutine the server starts, so that Close can wait for all of them.
	group servegroup.Group
}

// GenerateHostKey returns a new Ed25519 host key.
func GenerateHostKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	return priv, nil
}

// New returns a server that is not yet serving; call Serve.
func New(opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hostKey := opts.HostKey
	if hostKey == nil {
		k, err := GenerateHostKey()
		if err != nil {
			return nil, err
		}
		hostKey = k
	}
	signer, err := ssh.NewSignerFromSigner(hostKey)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	dial := opts.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		dial = d.DialContext
	}
	listen := opts.Listen
	if listen == nil {
		var lc net.ListenConfig
		listen = lc.Listen
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		logger: logger,
		signer: signer,
		env:    append([]string(nil), opts.Env...),
		dial:   dial,
		listen: listen,
		ctx:    ctx,
		cancel: cancel,
		group:  servegroup.Group{ClosedErr: ErrServerClosed},
	}
	// The tunnel authenticated the peer; see the package comment. Clients
	// normally try "none" first and are let in; the others are let in with
	// whatever key or password they offer.
	s.config = &ssh.ServerConfig{
		NoClientAuth:      true,
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
		PasswordCallback:  func(ssh.ConnMetadata, []byte) (*ssh.Permissions, error) { return nil, nil },
		ServerVersion:     "SSH-2.0-Tether",
	}
	s.config.AddHostKey(signer)
	return s, nil
}

// PublicKey returns the server's host public key, for known_hosts entries.
func (s *Server) PublicKey() ssh.PublicKey { return s.signer.PublicKey() }

// Serve accepts connections on l until Close or Shutdown, or until l fails.
// It closes l before returning. After Close or Shutdown it returns
// ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, s.handleConn)
}

// Close stops the server at once: it closes the listeners and every
// connection, hangs up every session's processes (SIGHUP, then SIGKILL
// after a grace period), and returns when all of the server's goroutines
// have ended.
func (s *Server) Close() error {
	s.group.Close()
	s.cancel()
	s.group.Wait()
	return nil
}

// Shutdown stops the server gracefully: it closes the listeners, waits for
// open connections to end by themselves until ctx is done, and then does
// what Close does. It returns ctx's error if it had to cut connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.group.StopAccepting()

	done := make(chan struct{})
	go func() {
		s.group.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.Close()
	<-done
	return err
}

// handleConn runs one SSH connection; the group closes c after.
func (s *Server) handleConn(c net.Conn) {
	logger := s.logger.With("remote", c.RemoteAddr().String())

	c.SetDeadline(time.Now().Add(handshakeTimeout))
	// Larger writes and reads for the tunnel's userspace TCP; see package
	// coalesce. Server.Close still cuts the connection at once: it closes
	// c itself.
	cc := coalesce.New(c, coalesce.Options{})
	defer cc.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(cc, s.config)
	if err != nil {
		logger.Debug("ssh handshake failed", "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	logger = logger.With("user", sconn.User(), "client", string(sconn.ClientVersion()))
	logger.Debug("ssh connection opened")

	ctx, cancel := context.WithCancel(s.ctx)
	cn := &conn{
		server: s,
		logger: logger,
		sconn:  sconn,
		ctx:    ctx,
	}
	// Server.Close closes c, which ends sconn; this covers a context
	// canceled any other way.
	stop := context.AfterFunc(ctx, func() { sconn.Close() })

	s.group.Go(func() { cn.handleGlobalRequests(reqs) })
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			s.group.Go(func() { cn.handleSession(nc) })
		case "direct-tcpip":
			s.group.Go(func() { cn.handleDirectTCPIP(nc) })
		default:
			nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
	// chans is closed: the connection is gone. Everything that hangs off
	// it watches ctx.
	stop()
	cancel()
	sconn.Close()
	cn.closeForwards()
	logger.Debug("ssh connection closed")
}

// conn is the state of one SSH connection.
type conn struct {
	server *Server
	logger *slog.Logger
	sconn  *ssh.ServerConn
	// ctx is canceled when the connection ends.
	ctx context.Context

	mu       sync.Mutex
	agentDir string                  // guarded by mu; temp dir of the agent socket, "" until requested
	agentL   net.Listener            // guarded by mu
	forwards map[string]net.Listener // guarded by mu; reverse forwards by requested "host:port"
	done     bool                    // guarded by mu; set by closeForwards
}

// handleGlobalRequests answers connection-level requests: reverse port
// forwarding, and "no" to everything else (keepalives among them, which
// only want an answer).
func (c *conn) handleGlobalRequests(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "tcpip-forward":
			ok, payload := c.startReverseForward(req.Payload)
			req.Reply(ok, payload)
		case "cancel-tcpip-forward":
			req.Reply(c.cancelReverseForward(req.Payload), nil)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// closeForwards closes the connection's reverse forwarding listeners and
// its agent socket; their goroutines then end.
func (c *conn) closeForwards() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	for _, l := range c.forwards {
		l.Close()
	}
	c.forwards = nil
	if c.agentL != nil {
		c.agentL.Close()
		os.RemoveAll(c.agentDir)
	}
}
