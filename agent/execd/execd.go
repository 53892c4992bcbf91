// Package execd is the workspace agent's exec server: it runs the commands
// and shells of `tether ssh` over the exec protocol (package execproto),
// one per connection, without SSH's handshake.
//
// Like the SSH server (agent/sshd), it lets in whoever connects: it only
// ever serves on a listener inside the tunnel, which has already
// authenticated and authorized the peer. Its programs start exactly as
// the SSH server's do (usershell.Start): the user's login shell, in their
// home directory, with the same environment (usershell.SessionEnviron;
// SSH_CONNECTION names the exec connection's addresses), on a PTY when the
// client asks for one, and with the same rule for output that a
// background process holds (usershell.DrainOutput).
//
// A peer can hold little: the request must come within requestTimeout and
// fit in a frame (execproto.MaxPayload), input beyond the window the
// protocol allows ends the connection, and the connection's end hangs up
// its program (SIGHUP, then SIGKILL) and ends every goroutine it started.
package execd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tetherdev/tether/agent/usershell"
	"github.com/tetherdev/tether/execproto"
	"github.com/tetherdev/tether/internal/coalesce"
	"github.com/tetherdev/tether/internal/servegroup"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("execd: server closed")

// Timeouts that bound what a peer can hold open without doing anything
// useful.
const (
	// requestTimeout bounds the wait for the request, so that a peer that
	// connects and says nothing does not hold a goroutine for long.
	requestTimeout = 30 * time.Second
	// closeTimeout bounds the wait for the client to close once the exit
	// status is sent (it closes as soon as it has read it).
	closeTimeout = 10 * time.Second
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs. Nil discards them.
	Logger *slog.Logger
	// Env is added to every program's environment ("KEY=value"), after
	// everything else, e.g. "TETHER_WORKSPACE=dev".
	Env []string
}

// Server runs programs for exec connections. Its methods are safe for
// concurrent use.
type Server struct {
	logger *slog.Logger
	env    []string
	group  servegroup.Group // listeners, connections and their goroutines
}

// New returns a server that is not yet serving; call Serve.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{logger: logger, env: append([]string(nil), opts.Env...), group: servegroup.Group{ClosedErr: ErrServerClosed}}
}

// Serve accepts connections on l until Close, or until l fails. It closes
// l before returning. After Close it returns ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	return s.group.Serve(l, s.handle)
}

// Close stops the server at once: it closes the listeners and every
// connection, which hangs up every program (SIGHUP, then SIGKILL after a
// grace period), and returns when all of the server's goroutines have
// ended.
func (s *Server) Close() error {
	s.group.Close()
	s.group.Wait()
	return nil
}

// handle runs one exec connection: the request, the program, and its end.
func (s *Server) handle(c net.Conn) {
	log := s.logger.With("remote", c.RemoteAddr().String())
	// Larger writes and reads for the tunnel's userspace TCP (package
	// coalesce). Closing c itself cuts the connection at once.
	cc := coalesce.New(c, coalesce.Options{})
	defer cc.Close()
	fr := execproto.NewReader(cc)
	w := &frameWriter{w: cc, ready: make(chan struct{})}

	c.SetReadDeadline(time.Now().Add(requestTimeout))
	typ, payload, err := fr.Next()
	if err != nil {
		log.Debug("exec: no request", "err", err)
		return
	}
	if typ != execproto.FrameRequest {
		refuse(c, cc, w, fmt.Sprintf("the first frame must be a request, not %q", typ))
		return
	}
	req, err := execproto.ParseRequest(payload)
	if err != nil {
		refuse(c, cc, w, err.Error())
		return
	}
	c.SetReadDeadline(time.Time{})
	// Accepted goes out before anything starts, straight to the conn (not
	// through cc, whose pending bytes a cut connection would lose): a
	// client that loses us after it knows the program may have run, and
	// does not run it again over SSH.
	if err := execproto.WriteFrame(c, execproto.FrameAccepted, nil); err != nil {
		log.Debug("exec: accept", "err", err)
		return
	}

	u, err := usershell.Current()
	if err != nil {
		refuse(c, cc, w, err.Error())
		return
	}
	spec := usershell.Spec{
		Command: req.Command,
		PTY:     req.TTY != nil,
		Stdout:  frameOutput{w, execproto.FrameStdout},
		Stderr:  frameOutput{w, execproto.FrameStderr},
	}
	sess := usershell.Session{Client: req.Env, Remote: c.RemoteAddr(), Local: c.LocalAddr(), Extra: s.env}
	if req.TTY != nil {
		spec.Size = usershell.Size{Rows: req.TTY.Rows, Cols: req.TTY.Cols}
		sess.Term = req.TTY.Term
	}
	spec.Env = func(tty string) []string { return u.SessionEnviron(sess, tty) }
	proc, err := usershell.Start(u, spec)
	if err != nil {
		log.Warn("start exec session", "err", err)
		refuse(c, cc, w, err.Error())
		return
	}
	log = log.With("pid", proc.Pid())
	log.Debug("exec session started", "pty", proc.TTY())
	// Started goes before any output: the output's writes wait for it.
	w.start(execproto.JSON(execproto.Started{Version: execproto.Version}))

	in := newInput(proc.Stdin())
	var wg sync.WaitGroup
	wg.Go(func() { in.run(w) })
	exitSent := make(chan struct{})
	wg.Go(func() {
		defer close(exitSent)
		st, err := proc.Wait()
		in.close() // nobody reads the input any more
		e := execproto.Exit{Status: st.Code}
		switch {
		case err != nil:
			log.Debug("exec session wait", "err", err)
			e.Status = 255 // as the SSH server says
		case st.Signal != 0:
			e = execproto.Exit{Signal: usershell.SignalName(st.Signal), SignalNumber: int(st.Signal), CoreDumped: st.CoreDumped}
		}
		w.write(execproto.FrameExit, execproto.JSON(e))
		// Everything is sent: deliver it, then wait (a while) for the
		// client, which closes once it has read the exit status.
		cc.CloseWrite()
		c.SetReadDeadline(time.Now().Add(closeTimeout))
		log.Debug("exec session ended", "status", e.Status, "signal", e.Signal)
	})

	err = s.serveFrames(fr, w, proc, in)
	select {
	case <-exitSent:
	default:
		// The client went away (or broke the protocol) while the program
		// ran: hang it up, as a terminal's hang-up does.
		log.Debug("exec connection ended before the program", "err", err)
		c.Close()
		in.close()
		proc.HangUp()
	}
	wg.Wait()
}

// serveFrames reads the client's frames after the request until the
// connection ends or the client breaks the protocol.
func (s *Server) serveFrames(fr *execproto.Reader, w *frameWriter, proc *usershell.Process, in *input) error {
	for {
		typ, p, err := fr.Next()
		if err != nil {
			return err
		}
		switch typ {
		case execproto.FrameStdin:
			taken, err := in.add(p)
			if err != nil {
				return err
			}
			if !taken {
				// Acknowledged all the same, so that the client's
				// input does not stall on a full window.
				w.write(execproto.FrameAck, execproto.AckPayload(uint32(len(p))))
			}
		case execproto.FrameCloseIn:
			in.end()
		case execproto.FrameResize:
			if rows, cols, ok := execproto.ParseResize(p); ok {
				proc.Resize(usershell.Size{Rows: rows, Cols: cols})
			}
		case execproto.FrameSignal:
			if sig, ok := usershell.SignalByName(string(p)); ok {
				proc.Signal(sig)
			}
		case execproto.FrameKeepalive:
			if len(p) <= execproto.MaxKeepalive {
				w.write(execproto.FramePong, p)
			}
		case execproto.FrameRequest:
			return errors.New("a second request")
		}
		// Other types are for newer servers: skipped.
	}
}

// frameWriter writes whole frames from several goroutines.
type frameWriter struct {
	ready chan struct{} // closed once FrameStarted is written
	mu    sync.Mutex
	w     io.Writer // guarded by mu
	err   error     // guarded by mu; the first write error, sticky
}

func (w *frameWriter) write(typ byte, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = execproto.WriteFrame(w.w, typ, p)
	}
	return w.err
}

// start answers the request, and lets the output go.
func (w *frameWriter) start(started []byte) {
	w.write(execproto.FrameStarted, started)
	close(w.ready)
}

// refuse answers the request with an error message and ends the
// connection: the message is delivered, and what the client sent after
// its request is read and dropped (for closeTimeout at most), so that the
// close does not reset the connection under the message.
func refuse(c net.Conn, cc *coalesce.Conn, w *frameWriter, msg string) {
	if len(msg) > execproto.MaxMessage {
		msg = msg[:execproto.MaxMessage]
	}
	w.write(execproto.FrameError, []byte(msg))
	cc.CloseWrite()
	c.SetReadDeadline(time.Now().Add(closeTimeout))
	io.Copy(io.Discard, cc)
}

// frameOutput is one of the program's outputs as frames of type typ.
type frameOutput struct {
	w   *frameWriter
	typ byte
}

func (o frameOutput) Write(p []byte) (int, error) {
	<-o.w.ready
	n := 0
	for len(p) > 0 {
		k := min(len(p), execproto.MaxPayload)
		if err := o.w.write(o.typ, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// input holds what the client sent for the program's stdin until the
// program takes it: at most execproto.InputWindow bytes, which the client
// does not exceed, so that reading the client's frames never waits for
// the program.
type input struct {
	stdin io.WriteCloser

	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte // guarded by mu
	queued int      // guarded by mu; bytes in queue
	eof    bool     // guarded by mu; the client's input ended
	closed bool     // guarded by mu; stop, whatever is queued
}

func newInput(stdin io.WriteCloser) *input {
	in := &input{stdin: stdin}
	in.cond = sync.NewCond(&in.mu)
	return in
}

// add queues p (a frame's payload, reused by the reader: copied). It
// reports false when p was dropped because the program no longer reads
// its input, as a closed pipe would drop it.
func (in *input) add(p []byte) (taken bool, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed || in.eof {
		return false, nil
	}
	if in.queued+len(p) > execproto.InputWindow {
		return false, fmt.Errorf("the client sent more than %d bytes of input ahead", execproto.InputWindow)
	}
	in.queue = append(in.queue, append([]byte(nil), p...))
	in.queued += len(p)
	in.cond.Broadcast()
	return true, nil
}

// end marks the end of the input: the program reads EOF once it has read
// what is queued.
func (in *input) end() {
	in.mu.Lock()
	in.eof = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

// close stops the input at once.
func (in *input) close() {
	in.mu.Lock()
	in.closed = true
	in.cond.Broadcast()
	in.mu.Unlock()
}

// run writes the queued input to the program and acknowledges each piece
// to the client, until the input ends or is closed. A write the program
// does not take ends when the program does (its input pipe or terminal is
// closed then).
func (in *input) run(w *frameWriter) {
	defer in.stdin.Close()
	for {
		in.mu.Lock()
		for len(in.queue) == 0 && !in.eof && !in.closed {
			in.cond.Wait()
		}
		if in.closed || len(in.queue) == 0 {
			in.mu.Unlock()
			return
		}
		p := in.queue[0]
		in.queue = in.queue[1:]
		in.mu.Unlock()
		_, err := in.stdin.Write(p)
		in.mu.Lock()
		in.queued -= len(p)
		in.mu.Unlock()
		if err != nil {
			in.close()
			return
		}
		w.write(execproto.FrameAck, execproto.AckPayload(uint32(len(p))))
	}
}
