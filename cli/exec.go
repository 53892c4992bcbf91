package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetherdev/tether/execproto"
	"github.com/tetherdev/tether/internal/coalesce"
)

// `tether ssh WS [-- CMD]` runs its command over the exec protocol
// (package execproto) where it can: one round trip to the workspace instead
// of SSH's five. It behaves as the SSH path does to the user: the same
// program, environment and terminal, output in order and whole before the
// exit status, the exit status passed through (128+N for a signal), 255
// with a reason when the session ends without one, Ctrl-C sent on as
// SIGTERM, and keepalives with the same limits.
//
// SSH stays for what the exec protocol does not do (--stdio, agent
// forwarding), when TETHER_SSH_PROTOCOL=ssh asks for it, and for agents
// that do not serve the exec port: those are older, and forward the port
// to the workspace's loopback, where nothing listens, so the connection
// closes before any answer. The CLI then runs the session over SSH at
// once, with whatever input it had sent already, so that nothing is lost.

// sshProtocolEnv names the environment variable that makes `tether ssh`
// use SSH for every session ("ssh"); for diagnosis, and for a workspace
// whose exec port something else answers.
const sshProtocolEnv = "TETHER_SSH_PROTOCOL"

// interruptGrace is how long an interrupted `tether ssh` waits, once it has
// passed SIGTERM on, for the program to end and its last output to arrive.
const interruptGrace = 2 * time.Second

// answerTimeout bounds the wait for the agent's answer to the request,
// as SSH's handshake is bounded.
const answerTimeout = 30 * time.Second

// errNoExec says that the workspace's agent does not serve the exec
// protocol: the session must go over SSH.
var errNoExec = errors.New("the agent does not serve the exec protocol")

// execSession is one session over the exec protocol.
type execSession struct {
	r       *root
	conn    net.Conn // closed to cut the session at once
	cc      *coalesce.Conn
	st      *sessionTerminal
	in      *inputPump
	gone    func() error
	command string
	tl      *timeline

	mu      sync.Mutex
	cond    *sync.Cond
	err     error         // guarded by mu; the first write error
	window  int           // guarded by mu; input sent and not acknowledged
	started bool          // guarded by mu; the agent answered FrameStarted
	replay  [][]byte      // guarded by mu; input sent before the answer, for SSH if there is none
	stopIn  bool          // guarded by mu; the input copy must stop
	inStop  chan struct{} // closed with stopIn set

	heard   atomic.Int64 // when a frame last arrived (UnixNano)
	writing atomic.Bool  // a write to the local stdout or stderr is under way
	lostMu  sync.Mutex
	lost    error // guarded by lostMu; why the keepalives gave up
}

// runExec runs the session on conn, a connection to the agent's exec port.
// It returns errNoExec (with the input to replay) when the agent answered
// nothing: the caller then runs it over SSH.
func (r *root) runExec(ctx context.Context, conn net.Conn, tl *timeline, gone func() error, command string, st *sessionTerminal, in *inputPump) (replay [][]byte, err error) {
	s := &execSession{r: r, conn: conn, cc: coalesce.New(conn, coalesce.Options{}), st: st, in: in, gone: gone, command: command, tl: tl, inStop: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.heard.Store(time.Now().UnixNano())
	var inputDone sync.WaitGroup
	// finish cuts the connection (nothing more needs to reach the agent)
	// and ends the session's goroutines.
	finish := func() {
		s.stopInput()
		conn.Close()
		s.cc.Close()
		inputDone.Wait()
	}
	defer finish()

	req := execproto.Request{Version: execproto.Version, Command: command}
	for _, k := range []string{"LANG", "LC_ALL", "LC_CTYPE", "COLORTERM"} {
		if v := os.Getenv(k); v != "" {
			req.Env = append(req.Env, k+"="+v)
		}
	}
	if st.tty {
		req.TTY = &execproto.TTY{Term: st.term, Rows: clampUint16(st.rows), Cols: clampUint16(st.cols)}
	}
	end := tl.begin("exec-start")
	// The request and the input go at once; the answer comes with the
	// first output.
	s.write(execproto.FrameRequest, execproto.JSON(req))
	inputDone.Go(s.copyInput)

	// The answer is waited for until Ctrl-C, and for answerTimeout at
	// most: something that takes the connection and says nothing is not
	// the agent's exec server.
	stopCut := context.AfterFunc(ctx, func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(answerTimeout))
	fr := execproto.NewReader(s.cc)
	typ, p, rerr := fr.Next()
	// Accepted: the agent's exec server has the request and starts it
	// now. Whatever happens next, the command is never run again over SSH.
	accepted := rerr == nil && typ == execproto.FrameAccepted
	if accepted {
		typ, p, rerr = fr.Next()
	}
	conn.SetReadDeadline(time.Time{})
	stopCut()
	switch {
	case rerr == nil && typ == execproto.FrameStarted:
		if _, err := execproto.ParseStarted(p); err != nil {
			return nil, fmt.Errorf("start remote command: %w", err)
		}
	case rerr == nil && typ == execproto.FrameError:
		return nil, fmt.Errorf("start remote command: %s", p)
	case gone() != nil:
		return nil, gone()
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case accepted:
		// Not knowing whether the program started, running it again
		// could do twice what was asked once.
		why := "closed the connection"
		switch {
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			why = fmt.Sprintf("waited %v", answerTimeout)
		case rerr == nil:
			why = fmt.Sprintf("sent a frame of type %q", typ)
		}
		return nil, fmt.Errorf("start remote command: the workspace took the command and %s without saying it started; it may have run, so check what it does before you run it again", why)
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		return nil, fmt.Errorf("start remote command: the workspace did not answer within %v", answerTimeout)
	default:
		// Closed without a word, or something that is not the agent's
		// exec server answered: an older agent. The input already sent
		// goes to SSH.
		end("refused", true)
		finish()
		s.mu.Lock()
		replay = s.replay
		s.mu.Unlock()
		return replay, errNoExec
	}
	end()
	s.mu.Lock()
	s.started, s.replay = true, nil
	s.mu.Unlock()

	if st.tty {
		stopResize := st.lt.watchSize([2]int{st.cols, st.rows}, func(cols, rows int) {
			s.write(execproto.FrameResize, execproto.ResizePayload(clampUint16(rows), clampUint16(cols)))
		})
		defer stopResize()
	}
	stopKeepalive := make(chan struct{})
	var keepalive sync.WaitGroup
	interval, timeout := sshKeepaliveInterval, sshKeepaliveTimeout
	if r.keepalive != nil {
		interval, timeout = r.keepalive[0], r.keepalive[1]
	}
	keepalive.Go(func() { s.keepAlive(interval, timeout, stopKeepalive) })
	defer func() {
		close(stopKeepalive)
		keepalive.Wait()
	}()

	end = tl.begin("exec-wait")
	type outcome struct {
		exit *execproto.Exit
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		e, err := s.readOutput(fr)
		done <- outcome{e, err}
	}()
	var res outcome
	select {
	case res = <-done:
		end()
	case <-ctx.Done():
		// As the SSH path does: the program gets SIGTERM. Its last words
		// and its end are waited for a moment, then the command ends.
		s.write(execproto.FrameSignal, []byte("TERM"))
		t := time.NewTimer(interruptGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			conn.Close()
			<-done
		}
		return nil, ctx.Err()
	}
	if res.exit != nil {
		return nil, exitOf(*res.exit)
	}
	// Never success: the command's fate is unknown.
	why := gone()
	if why == nil {
		s.lostMu.Lock()
		why = s.lost
		s.lostMu.Unlock()
	}
	if why == nil {
		why = errors.New("the workspace closed the session without an exit status")
		if res.err != nil && !errors.Is(res.err, io.EOF) && !errors.Is(res.err, net.ErrClosed) && !errors.Is(res.err, syscall.ECONNRESET) {
			why = fmt.Errorf("the session broke: %w", res.err)
		}
	}
	nl := "\n"
	if st.tty {
		nl = "\r\n" // the terminal is still raw
	}
	fmt.Fprintf(r.env.Stderr, "tether: %v%s", why, nl)
	return nil, &exitError{code: exitConnectionLost}
}

// exitOf is the CLI's exit for how the remote program ended: its status,
// or 128+N for signal N, as a shell reports it.
func exitOf(e execproto.Exit) error {
	if e.Signal != "" {
		n := e.SignalNumber
		if n == 0 {
			n = signalNumber(e.Signal)
		}
		return &exitError{code: 128 + n}
	}
	if e.Status == 0 {
		return nil
	}
	return &exitError{code: e.Status}
}

// readOutput writes the program's output as it comes, and returns its exit
// once everything before it is written, or why the connection ended.
func (s *execSession) readOutput(fr *execproto.Reader) (*execproto.Exit, error) {
	stdout, stderr := s.r.env.Stdout, s.r.env.Stderr
	for {
		typ, p, err := fr.Next()
		if err != nil {
			return nil, err
		}
		s.heard.Store(time.Now().UnixNano())
		switch typ {
		case execproto.FrameStdout, execproto.FrameStderr:
			w := stdout
			if typ == execproto.FrameStderr {
				w = stderr
			}
			s.writing.Store(true)
			_, werr := w.Write(p)
			s.writing.Store(false)
			if werr != nil && typ == execproto.FrameStdout {
				// Nobody takes the output any more (a closed pipe): the
				// program learns it as it would from a closed pipe.
				s.conn.Close()
				return nil, fmt.Errorf("write output: %w", werr)
			}
		case execproto.FrameAck:
			if n, ok := execproto.ParseAck(p); ok {
				s.mu.Lock()
				s.window = max(0, s.window-int(n))
				s.cond.Broadcast()
				s.mu.Unlock()
			}
		case execproto.FrameExit:
			e, err := execproto.ParseExit(p)
			if err != nil {
				return nil, err
			}
			return &e, nil
		}
		// Pongs only count as heard; other types are for newer CLIs.
	}
}

// stopInput makes copyInput end.
func (s *execSession) stopInput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopIn {
		s.stopIn = true
		close(s.inStop)
		s.cond.Broadcast()
	}
}

// write sends one frame; after the first error it does nothing more.
func (s *execSession) write(typ byte, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = execproto.WriteFrame(s.cc, typ, p)
	}
	return s.err
}

// copyInput sends the input as it comes, within the protocol's window,
// until it ends (then FrameCloseIn) or the session stops it.
func (s *execSession) copyInput() {
	for {
		var chunk []byte
		var ok bool
		select {
		case chunk, ok = <-s.in.ch:
		case <-s.inStop:
			return
		}
		if !ok {
			s.write(execproto.FrameCloseIn, nil)
			return
		}
		s.mu.Lock()
		for !s.stopIn && s.err == nil && s.window > 0 && s.window+len(chunk) > execproto.InputWindow {
			s.cond.Wait()
		}
		if s.stopIn {
			// Not sent: it goes to SSH if the session falls back.
			if !s.started {
				s.replay = append(s.replay, chunk)
			}
			s.mu.Unlock()
			return
		}
		s.window += len(chunk)
		if !s.started {
			s.replay = append(s.replay, chunk)
		}
		if s.err == nil {
			s.err = execproto.WriteFrame(s.cc, execproto.FrameStdin, chunk)
		}
		s.mu.Unlock()
	}
}

// keepAlive sends a keepalive every interval, and gives the session up
// (closing its connection) when nothing has arrived for timeout while the
// CLI was not itself busy writing output.
func (s *execSession) keepAlive(interval, timeout time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if !s.writing.Load() && time.Since(time.Unix(0, s.heard.Load())) > timeout {
			s.lostMu.Lock()
			s.lost = fmt.Errorf("the workspace did not answer for %v", timeout)
			s.lostMu.Unlock()
			s.conn.Close()
			return
		}
		s.write(execproto.FrameKeepalive, []byte("k"))
	}
}

// inputPump reads the session's input on a goroutine of its own, so that
// it can go to the exec protocol at once and, if the agent turns out not
// to serve it, to SSH without losing a byte.
type inputPump struct {
	ch   chan []byte // each read; closed at the end of the input
	stop chan struct{}
	once sync.Once
}

// inputChunk bounds one read of the input.
const inputChunk = 64 << 10

func startInputPump(r io.Reader) *inputPump {
	p := &inputPump{ch: make(chan []byte), stop: make(chan struct{})}
	go func() {
		defer close(p.ch)
		for {
			buf := make([]byte, inputChunk)
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case p.ch <- buf[:n]:
				case <-p.stop:
					return
				}
			}
			if err != nil {
				return // EOF, or input that cannot be read: its end either way
			}
		}
	}()
	return p
}

// close lets the pump's goroutine end once its read returns.
func (p *inputPump) close() { p.once.Do(func() { close(p.stop) }) }

// reader is the rest of the input, after replay, as an io.Reader (for SSH).
func (p *inputPump) reader(replay [][]byte) io.Reader {
	return &pumpReader{p: p, pending: replay}
}

type pumpReader struct {
	p       *inputPump
	pending [][]byte
	cur     []byte
}

func (r *pumpReader) Read(b []byte) (int, error) {
	for len(r.cur) == 0 {
		if len(r.pending) > 0 {
			r.cur, r.pending = r.pending[0], r.pending[1:]
			continue
		}
		chunk, ok := <-r.p.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur = chunk
	}
	n := copy(b, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func clampUint16(n int) uint16 { return uint16(min(max(n, 0), 0xffff)) }
