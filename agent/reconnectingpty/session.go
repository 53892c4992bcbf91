package reconnectingpty

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tetherdev/tether/agent/usershell"
	"github.com/tetherdev/tether/ptyproto"
)

const (
	// outputGrace is how long after its process exits a session waits
	// for the end of its output before a background process holding the
	// terminal no longer keeps the session alive. Output still queued is
	// read whatever the wait (see usershell.DrainOutput).
	outputGrace = time.Second
)

// session is one terminal and the process on it. Three goroutines serve
// it: readOutput (terminal to clients), wait (reaps the process) and
// supervise (hangs it up on request).
type session struct {
	id       string
	instance string // fresh for each session, for ptyproto.Position
	server   *Server
	logger   *slog.Logger
	ptmx     *os.File
	proc     *os.Process

	exited   chan struct{} // closed when the process has been reaped
	outDone  chan struct{} // closed when the terminal's output has ended
	hangupCh chan struct{} // closed by hangUp
	hangup   sync.Once

	mu         sync.Mutex
	scrollback scrollback           // guarded by mu
	clients    map[*client]struct{} // guarded by mu
	ended      bool                 // guarded by mu; no more output, no new clients
	idle       *time.Timer          // guarded by mu; runs while no client is attached
	idleGen    int                  // guarded by mu; tells a stale idle timer from the current one
}

// client is one attached connection.
type client struct {
	conn net.Conn
	// out carries output to writeLoop. The session closes it, under its
	// mu, when it lets the client go.
	out chan []byte
}

// newSessionLocked registers a new session for h, on a terminal of its
// own, without its process: start runs that. Clients may attach at once:
// they get their answer now, and the shell's output once it runs. Starting
// a process takes the whole process's fork lock, so that under load (many
// sessions starting at once on a busy machine) the last in line waited
// seconds per session ahead of it; answering only then held up every
// attach, to the point of the server's giving up on the agent.
func (s *Server) newSessionLocked(h ptyproto.Header, logger *slog.Logger) (*session, *os.File, error) {
	size := usershell.Size{Rows: 24, Cols: 80}
	if h.Height > 0 && h.Width > 0 {
		size = usershell.Size{Rows: h.Height, Cols: h.Width}
	}
	ptmx, tty, err := usershell.OpenPTY(size)
	if err != nil {
		return nil, nil, err
	}
	sess := &session{
		id:         h.ID,
		instance:   newInstance(),
		server:     s,
		logger:     logger,
		ptmx:       ptmx,
		exited:     make(chan struct{}),
		outDone:    make(chan struct{}),
		hangupCh:   make(chan struct{}),
		scrollback: scrollback{size: s.scrollbackSize},
		clients:    make(map[*client]struct{}),
	}
	s.sessions[h.ID] = sess
	return sess, tty, nil
}

// start runs the session's process, command (or the login shell), on tty,
// which it closes. A process that cannot start ends the session with a
// line saying why, for its clients' terminals. The caller runs start in
// the server's group.
func (sess *session) start(command string, tty *os.File) {
	s := sess.server
	err := func() error {
		defer tty.Close()
		if hook := s.beforeStart; hook != nil {
			if err := hook(sess.id); err != nil {
				return fmt.Errorf("start shell: %w", err)
			}
		}
		select {
		case <-sess.hangupCh:
			return ErrServerClosed
		default:
		}
		u, err := usershell.Current()
		if err != nil {
			return err
		}
		cmd := u.Command(command)
		env := usershell.Setenv(u.Environ(), "TERM=xterm-256color", "TETHER=true")
		cmd.Env = usershell.Setenv(env, s.env...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		// A new session with the terminal as its controlling terminal, so
		// that job control and ^C work and the group can be hung up at
		// once.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start shell: %w", err)
		}
		sess.proc = cmd.Process
		sess.logger.Debug("session started", "pid", cmd.Process.Pid)
		s.group.Go(sess.readOutput)
		s.group.Go(func() { sess.wait(cmd) })
		s.group.Go(sess.supervise)
		return nil
	}()
	if err == nil {
		return
	}
	if errors.Is(err, ErrServerClosed) {
		sess.logger.Debug("start session", "err", err)
	} else {
		sess.logger.Warn("start session", "err", err)
	}
	sess.broadcast(fmt.Appendf(nil, "\r\nreconnectingpty: %v\r\n", err))
	close(sess.outDone)
	close(sess.exited)
	sess.end()
	sess.ptmx.Close()
}

// readOutput copies the terminal's output to the scrollback and the
// clients until the terminal ends, then ends the session.
func (sess *session) readOutput() {
	buf := make([]byte, readBufSize)
	for reads := 0; ; reads++ {
		if hook := sess.server.beforeOutputRead; hook != nil {
			hook(reads)
		}
		n, err := sess.ptmx.Read(buf)
		if n > 0 {
			sess.broadcast(buf[:n])
		}
		if err != nil {
			break
		}
	}
	close(sess.outDone)
	// The terminal normally ends because the process did; if it failed on
	// its own, the process must not outlive the session.
	sess.hangUp()
	<-sess.exited
	sess.end()
}

// wait reaps the process, then closes the terminal once its output has
// been read to the end (EIO once nobody holds the terminal), or, when a
// background process holds it, once nothing is left to read after
// outputGrace (usershell.DrainOutput).
func (sess *session) wait(cmd *exec.Cmd) {
	err := cmd.Wait()
	sess.logger.Debug("session process exited", "err", err)
	close(sess.exited)
	usershell.DrainOutput(sess.ptmx, sess.outDone, outputGrace)
	sess.ptmx.Close()
}

// supervise hangs up the process when asked: SIGHUP to its process group,
// as a terminal hang-up does, then SIGKILL after usershell.HangUpGrace.
func (sess *session) supervise() {
	select {
	case <-sess.exited:
		return
	case <-sess.hangupCh:
	}
	usershell.HangUp(sess.proc.Pid, sess.exited)
}

// hangUp asks supervise to end the process. It does not block.
func (sess *session) hangUp() {
	sess.hangup.Do(func() { close(sess.hangupCh) })
}

// end lets the clients go, once they have been sent the last output, and
// forgets the session.
func (sess *session) end() {
	sess.server.removeSession(sess)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.ended = true
	for cl := range sess.clients {
		sess.removeClientLocked(cl)
	}
	if sess.idle != nil {
		sess.idle.Stop()
		sess.idle = nil
	}
	sess.logger.Debug("session ended")
}

// broadcast records output and queues it for every client. A client whose
// queue is full is let go: it would otherwise stall everyone.
func (sess *session) broadcast(p []byte) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.scrollback.write(p)
	if len(sess.clients) == 0 {
		return
	}
	chunk := append([]byte(nil), p...) // shared, read-only
	for cl := range sess.clients {
		select {
		case cl.out <- chunk:
		default:
			sess.logger.Debug("client too slow; disconnecting it")
			cl.conn.Close()
			sess.removeClientLocked(cl)
		}
	}
}

// attach adds a client on c and queues the scrollback for it, in one step
// so that it sees every byte of output once. A non-zero size resizes the
// terminal. It reports false if the session has ended.
func (sess *session) attach(c net.Conn, height, width uint16, positions bool, resume *ptyproto.Position) (*client, bool) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.ended {
		return nil, false
	}
	if height > 0 && width > 0 {
		if err := usershell.SetSize(sess.ptmx, usershell.Size{Rows: height, Cols: width}); err != nil {
			sess.logger.Debug("resize on attach", "err", err)
		}
	}
	cl := &client{conn: c, out: make(chan []byte, clientQueue)}
	if !positions {
		if replay := sess.scrollback.replay(); len(replay) > 0 {
			cl.out <- replay
		}
	} else {
		a := ptyproto.Attached{Position: ptyproto.Position{Instance: sess.instance}}
		var out []byte
		ok := false
		if resume != nil && resume.Instance == sess.instance {
			out, ok = sess.scrollback.since(resume.Offset)
		}
		if ok {
			a.Offset = resume.Offset
		} else {
			a.Replay = true
			a.Offset, out = sess.scrollback.replayAt()
		}
		cl.out <- ptyproto.AttachedLine(a)
		if len(out) > 0 {
			cl.out <- out
		}
	}
	sess.clients[cl] = struct{}{}
	if sess.idle != nil {
		sess.idle.Stop()
		sess.idle = nil
	}
	return cl, true
}

// detach removes a client whose connection has ended.
func (sess *session) detach(cl *client) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.removeClientLocked(cl)
}

// removeClientLocked lets cl go, if it is still attached, and starts the
// idle timer when it was the last client.
func (sess *session) removeClientLocked(cl *client) {
	if _, ok := sess.clients[cl]; !ok {
		return
	}
	delete(sess.clients, cl)
	close(cl.out)
	if len(sess.clients) > 0 || sess.ended || sess.idle != nil {
		return
	}
	sess.idleGen++
	gen := sess.idleGen
	sess.idle = time.AfterFunc(sess.server.idleTimeout, func() {
		sess.mu.Lock()
		expired := sess.idleGen == gen && len(sess.clients) == 0 && !sess.ended
		sess.mu.Unlock()
		if expired {
			sess.logger.Debug("session idle; hanging up")
			sess.hangUp()
		}
	})
}

// readInput applies a client's frames to the terminal until the client's
// connection ends.
func (sess *session) readInput(br *bufio.Reader) error {
	buf := make([]byte, ptyproto.MaxFramePayload)
	for {
		typ, payload, err := ptyproto.ReadFrame(br, buf)
		if err != nil {
			return err
		}
		switch typ {
		case ptyproto.FrameData:
			if _, err := sess.ptmx.Write(payload); err != nil {
				return fmt.Errorf("write to terminal: %w", err)
			}
		case ptyproto.FrameResize:
			h, w, ok := ptyproto.ParseResize(payload)
			if !ok {
				return fmt.Errorf("malformed resize frame")
			}
			if err := usershell.SetSize(sess.ptmx, usershell.Size{Rows: h, Cols: w}); err != nil {
				sess.logger.Debug("resize", "err", err)
			}
		}
	}
}

// writeLoop sends queued output to the client until the session lets it
// go, then closes its connection: after the session's last output, the
// client reads EOF.
func (cl *client) writeLoop() {
	defer cl.conn.Close()
	for p := range cl.out {
		if _, err := cl.conn.Write(p); err != nil {
			// Closing the connection ends readInput, which detaches the
			// client and so closes out.
			return
		}
	}
}

// scrollback keeps the last size bytes of output.
type scrollback struct {
	size      int
	buf       []byte
	truncated bool   // output has been dropped from the front
	total     uint64 // bytes of output ever written: the offset after buf
}

func (b *scrollback) write(p []byte) {
	b.total += uint64(len(p))
	if b.buf == nil {
		b.buf = make([]byte, 0, b.size)
	}
	if len(p) >= b.size {
		b.buf = append(b.buf[:0], p[len(p)-b.size:]...)
		b.truncated = true
		return
	}
	if over := len(b.buf) + len(p) - b.size; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.truncated = true
	}
	b.buf = append(b.buf, p...)
}

// replay returns a copy of the scrollback that does not start in the
// middle of a UTF-8 sequence.
func (b *scrollback) replay() []byte {
	p := b.buf
	if b.truncated {
		for i := 0; i < utf8.UTFMax-1 && len(p) > 0 && !utf8.RuneStart(p[0]); i++ {
			p = p[1:]
		}
	}
	return append([]byte(nil), p...)
}

// replayAt is replay with the offset of its first byte.
func (b *scrollback) replayAt() (uint64, []byte) {
	p := b.replay()
	return b.total - uint64(len(p)), p
}

// since returns a copy of the output from offset on, if the scrollback
// still holds all of it.
func (b *scrollback) since(offset uint64) ([]byte, bool) {
	start := b.total - uint64(len(b.buf))
	if offset < start || offset > b.total {
		return nil, false
	}
	return append([]byte(nil), b.buf[offset-start:]...), true
}

// newInstance names a new session, uniquely enough that a session started
// again under the same id is never taken for the old one.
func newInstance() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
