package reconnectingpty

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tetherdev/tether/internal/servegroup"
	"github.com/tetherdev/tether/ptyproto"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("reconnectingpty: server closed")

// Defaults of Options.
const (
	DefaultIdleTimeout    = time.Hour
	DefaultScrollbackSize = 64 << 10
)

const (
	// headerTimeout bounds how long a new connection may take to send its
	// header.
	headerTimeout = 30 * time.Second
	// clientQueue is how many chunks of output may wait for a slow client
	// before it is disconnected.
	clientQueue = 256
	// readBufSize is the size of one read from the terminal.
	readBufSize = 32 << 10
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Env is added to every session's environment ("KEY=value"), after
	// everything else, e.g. "TETHER_WORKSPACE=dev".
	Env []string
	// IdleTimeout is how long a session lives with no client attached.
	// Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ScrollbackSize is how many bytes of recent output a session keeps to
	// replay to clients that attach. Zero means DefaultScrollbackSize.
	ScrollbackSize int
}

// Server serves reconnecting terminal sessions. Its methods are safe for
// concurrent use.
type Server struct {
	logger         *slog.Logger
	env            []string
	idleTimeout    time.Duration
	scrollbackSize int
	// beforeOutputRead, when set, runs before every read of a session's
	// output with the number of reads done so far. Tests set it
	// (export_test.go) to starve the reader.
	beforeOutputRead func(reads int)
	// beforeStart, when set, runs before a session's process starts, with
	// its id; an error fails the start. Tests set it (export_test.go) to
	// hold a start up, as a fork queued behind others on a loaded machine
	// is, or to refuse it.
	beforeStart func(id string) error

	// group holds the listeners and connections and counts every
	// goroutine the server starts.
	group servegroup.Group

	mu       sync.Mutex
	sessions map[string]*session // guarded by mu
}

// New returns a server that is not yet serving; call Serve.
func New(opts Options) *Server {
	s := &Server{
		logger:         opts.Logger,
		env:            append([]string(nil), opts.Env...),
		idleTimeout:    opts.IdleTimeout,
		scrollbackSize: opts.ScrollbackSize,
		sessions:       make(map[string]*session),
		group:          servegroup.Group{ClosedErr: ErrServerClosed},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.idleTimeout <= 0 {
		s.idleTimeout = DefaultIdleTimeout
	}
	if s.scrollbackSize <= 0 {
		s.scrollbackSize = DefaultScrollbackSize
	}
	return s
}

// Serve accepts connections on l until Close, or until l fails. It closes
// l before returning. After Close it returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, connMode{}) }

// ServePositions is Serve for tether.AgentTerminalPort: each connection
// is answered with a ptyproto.Attached line before its output, and may
// resume a session's output where it left it.
func (s *Server) ServePositions(l net.Listener) error { return s.serve(l, connMode{positions: true}) }

// ServeBound serves one connection, as ServePositions does, on session id
// whatever its header names (a browser's data channel, whose session the
// server chose). It returns when the connection ends, or at once after
// Close. It owns c.
func (s *Server) ServeBound(c net.Conn, id string) {
	s.group.ServeConn(c, func(c net.Conn) {
		s.handleConn(c, connMode{positions: true, boundID: id})
	})
}

// connMode is what a connection speaks: with positions or without, and
// on a session of its own choice or the one it is bound to.
type connMode struct {
	positions bool
	boundID   string
}

func (s *Server) serve(l net.Listener, mode connMode) error {
	return s.group.Serve(l, func(c net.Conn) { s.handleConn(c, mode) })
}

// Close stops the server: it closes the listeners and every connection,
// hangs up every session (SIGHUP, then SIGKILL after a grace period), and
// returns when all of the server's goroutines have ended.
func (s *Server) Close() error {
	// The group closes first: attach, which asks it under mu, then starts
	// no session that the loop below would miss.
	s.group.Close()
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.hangUp()
	}
	s.mu.Unlock()
	s.group.Wait()
	return nil
}

// handleConn runs one client connection; the group closes c after.
func (s *Server) handleConn(c net.Conn, mode connMode) {
	logger := s.logger.With("remote", c.RemoteAddr().String())

	c.SetReadDeadline(time.Now().Add(headerTimeout))
	br := bufio.NewReaderSize(c, ptyproto.MaxHeaderLen)
	var h ptyproto.Header
	var err error
	if mode.boundID != "" {
		h, err = ptyproto.ReadBoundHeader(br, mode.boundID)
	} else {
		h, err = ptyproto.ReadHeader(br)
	}
	if err != nil {
		logger.Debug("bad header", "err", err)
		fmt.Fprintf(c, "\r\nreconnectingpty: %v\r\n", err)
		return
	}
	c.SetReadDeadline(time.Time{})
	logger = logger.With("session", h.ID)

	sess, cl, err := s.attach(c, h, mode.positions, logger)
	if err != nil {
		logger.Warn("start session", "err", err)
		fmt.Fprintf(c, "\r\nreconnectingpty: %v\r\n", err)
		return
	}
	s.group.Go(cl.writeLoop)
	err = sess.readInput(br)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		logger.Debug("client input ended", "err", err)
	}
	sess.detach(cl)
}

// attach attaches c to the session that h names, starting it if it is not
// running. A new session's process starts in the background, after its
// first client has its answer queued (see newSessionLocked).
func (s *Server) attach(c net.Conn, h ptyproto.Header, positions bool, logger *slog.Logger) (*session, *client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.group.Closed() {
		return nil, nil, ErrServerClosed
	}
	if sess, ok := s.sessions[h.ID]; ok {
		if cl, ok := sess.attach(c, h.Height, h.Width, positions, h.Resume); ok {
			return sess, cl, nil
		}
		// The session is ending; its id is free for a new one.
	}
	sess, tty, err := s.newSessionLocked(h, logger)
	if err != nil {
		return nil, nil, err
	}
	cl, _ := sess.attach(c, 0, 0, positions, nil) // a session not started has not ended
	s.group.Go(func() { sess.start(h.Command, tty) })
	return sess, cl, nil
}

// removeSession forgets sess, if it is still the session of its id.
func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[sess.id] == sess {
		delete(s.sessions, sess.id)
	}
}
