package execd_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/execd"
	"github.com/tetherdev/tether/execproto"
)

// testTimeout bounds every exchange with the server.
const testTimeout = 30 * time.Second

// startServer serves on a loopback listener until the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	srv := execd.New(execd.Options{Env: []string{"TETHER_WORKSPACE=test"}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, execd.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String()
}

// result is what a session sent back.
type result struct {
	first          byte // the type of the agent's first frame
	accepted       bool
	started        bool
	refused        string
	stdout, stderr bytes.Buffer
	acked          int
	exit           *execproto.Exit
	err            error // how reading ended, if not at the exit
}

// session is a client connection.
type session struct {
	t    *testing.T
	conn net.Conn
}

func dial(t *testing.T, addr string) *session {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return &session{t: t, conn: c}
}

func (s *session) send(typ byte, p []byte) {
	s.t.Helper()
	if err := execproto.WriteFrame(s.conn, typ, p); err != nil {
		s.t.Fatalf("send %q: %v", typ, err)
	}
}

func (s *session) request(req execproto.Request) {
	s.t.Helper()
	req.Version = execproto.Version
	s.send(execproto.FrameRequest, execproto.JSON(req))
}

// readAll reads frames until the exit (or the end), calling each for
// every frame first, if set.
func (s *session) readAll(each func(typ byte, p []byte)) *result {
	r := &result{}
	fr := execproto.NewReader(s.conn)
	for {
		typ, p, err := fr.Next()
		if err != nil {
			r.err = err
			return r
		}
		if each != nil {
			each(typ, p)
		}
		if r.first == 0 {
			r.first = typ
		}
		switch typ {
		case execproto.FrameAccepted:
			r.accepted = true
		case execproto.FrameStarted:
			r.started = true
		case execproto.FrameError:
			r.refused = string(p)
		case execproto.FrameStdout:
			r.stdout.Write(p)
		case execproto.FrameStderr:
			r.stderr.Write(p)
		case execproto.FrameAck:
			n, _ := execproto.ParseAck(p)
			r.acked += int(n)
		case execproto.FrameExit:
			e, err := execproto.ParseExit(p)
			if err != nil {
				r.err = err
				return r
			}
			r.exit = &e
			return r
		}
	}
}

// run runs command without a PTY, with stdin (nil: none sent, and EOF).
func run(t *testing.T, addr, command string, stdin []byte) *result {
	t.Helper()
	s := dial(t, addr)
	s.request(execproto.Request{Command: command})
	if len(stdin) > 0 {
		s.send(execproto.FrameStdin, stdin)
	}
	s.send(execproto.FrameCloseIn, nil)
	r := s.readAll(nil)
	if r.exit == nil {
		t.Fatalf("%q: no exit status (refused %q, %v)", command, r.refused, r.err)
	}
	return r
}

func TestCommands(t *testing.T) {
	addr := startServer(t)
	tests := []struct {
		name           string
		command        string
		stdin          string
		stdout, stderr string
		exit           execproto.Exit
	}{
		{name: "output and status", command: "echo out; echo err >&2; exit 3", stdout: "out\n", stderr: "err\n", exit: execproto.Exit{Status: 3}},
		{name: "stdin to its end", command: "cat; echo done", stdin: "piped\n", stdout: "piped\ndone\n"},
		{name: "no stdin", command: "wc -c", stdout: "0\n"},
		{name: "killed by a signal", command: "kill -KILL $$", exit: execproto.Exit{Signal: "KILL", SignalNumber: 9}},
		{name: "the session's environment", command: `echo $TETHER_WORKSPACE $TETHER ${SSH_CONNECTION:+ssh} $LANG`, stdout: "test true ssh C.UTF-8\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dial(t, addr)
			s.request(execproto.Request{Command: tt.command, Env: []string{"LANG=C.UTF-8", "TETHER=false"}})
			if tt.stdin != "" {
				s.send(execproto.FrameStdin, []byte(tt.stdin))
			}
			s.send(execproto.FrameCloseIn, nil)
			r := s.readAll(nil)
			if !r.started || r.exit == nil {
				t.Fatalf("started %v, exit %v, refused %q, %v", r.started, r.exit, r.refused, r.err)
			}
			// Accepted comes first, before the program starts: the
			// client must know not to run it again (cli/exec.go).
			if r.first != execproto.FrameAccepted {
				t.Errorf("the agent's first frame is %q, want %q", r.first, execproto.FrameAccepted)
			}
			if r.stdout.String() != tt.stdout || r.stderr.String() != tt.stderr || *r.exit != tt.exit {
				t.Errorf("stdout %q, stderr %q, exit %+v; want %q, %q, %+v", r.stdout.String(), r.stderr.String(), *r.exit, tt.stdout, tt.stderr, tt.exit)
			}
		})
	}
}

// TestLargeOutput: megabytes each way arrive whole and in order, with the
// input sent as a client does, within the window, and stderr apart.
func TestLargeOutput(t *testing.T) {
	addr := startServer(t)
	in := make([]byte, 3<<20+17)
	rand.Read(in)
	s := dial(t, addr)
	s.request(execproto.Request{Command: "cat; head -c 5000000 /dev/zero | tr '\\0' x >&2"})
	acks := make(chan int, 1024)
	done := make(chan *result, 1)
	go func() {
		done <- s.readAll(func(typ byte, p []byte) {
			if n, ok := execproto.ParseAck(p); ok && typ == execproto.FrameAck {
				acks <- int(n)
			}
		})
	}()
	inflight := 0
	for b := in; len(b) > 0; {
		k := min(len(b), 64<<10)
		for inflight+k > execproto.InputWindow {
			inflight -= <-acks
		}
		s.send(execproto.FrameStdin, b[:k])
		inflight += k
		b = b[k:]
	}
	s.send(execproto.FrameCloseIn, nil)
	r := <-done
	if r.exit == nil || *r.exit != (execproto.Exit{}) {
		t.Fatalf("exit %v, %v", r.exit, r.err)
	}
	if sha256.Sum256(r.stdout.Bytes()) != sha256.Sum256(in) {
		t.Errorf("stdout: %d bytes, not the %d sent", r.stdout.Len(), len(in))
	}
	if r.stderr.Len() != 5000000 || strings.Trim(r.stderr.String(), "x") != "" {
		t.Errorf("stderr: %d bytes", r.stderr.Len())
	}
}

// TestSignalAndHangUp: a signal reaches the program's group, and a client
// that goes away hangs its program up.
func TestSignalAndHangUp(t *testing.T) {
	addr := startServer(t)
	s := dial(t, addr)
	s.request(execproto.Request{Command: "trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.05; done"})
	sent := false
	r := s.readAll(func(typ byte, p []byte) {
		if typ == execproto.FrameStdout && !sent && bytes.Contains(p, []byte("ready")) {
			sent = true
			s.send(execproto.FrameSignal, []byte("INT"))
		}
	})
	if r.exit == nil || r.exit.Status != 7 || !strings.Contains(r.stdout.String(), "got INT") {
		t.Fatalf("exit %+v, stdout %q, %v", r.exit, r.stdout.String(), r.err)
	}

	// The client goes: its program is hung up.
	pidFile := filepath.Join(t.TempDir(), "pid")
	s = dial(t, addr)
	s.request(execproto.Request{Command: "echo $$ > " + pidFile + "; echo ready; exec sleep 600"})
	fr := execproto.NewReader(s.conn)
	for {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if typ == execproto.FrameStdout && bytes.Contains(p, []byte("ready")) {
			break
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	s.conn.Close()
	waitGone(t, pid)
}

// waitGone waits until process pid has ended.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still runs after its client went away", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPTY: a shell on a terminal of the size asked for, resized later,
// with TERM as asked.
func TestPTY(t *testing.T) {
	addr := startServer(t)
	s := dial(t, addr)
	s.request(execproto.Request{Command: "echo TERM=$TERM; stty size; tty; read x; stty size", TTY: &execproto.TTY{Term: "vt100", Rows: 30, Cols: 100}})
	sentResize := false
	r := s.readAll(func(typ byte, p []byte) {
		if typ == execproto.FrameStdout && !sentResize && bytes.Contains(p, []byte("/dev/")) {
			sentResize = true
			s.send(execproto.FrameResize, execproto.ResizePayload(40, 120))
			s.send(execproto.FrameStdin, []byte("go\r"))
		}
	})
	out := r.stdout.String()
	if r.exit == nil || r.exit.Status != 0 {
		t.Fatalf("exit %+v, %v: %q", r.exit, r.err, out)
	}
	for _, want := range []string{"TERM=vt100", "30 100", "/dev/pts/", "40 120"} {
		if !strings.Contains(out, want) {
			t.Errorf("the terminal's output %q lacks %q", out, want)
		}
	}
	if r.stderr.Len() != 0 {
		t.Errorf("stderr with a PTY: %q", r.stderr.String())
	}
}

// TestGarbage: whatever a peer sends, the server answers with an error or
// closes, and goes on serving others.
func TestGarbage(t *testing.T) {
	addr := startServer(t)
	random := make([]byte, 4096)
	rand.Read(random)
	tests := []struct {
		name    string
		stream  []byte
		refused string // the FrameError's message, or "" if it just closes
	}{
		{name: "random bytes", stream: random},
		{name: "SSH's banner", stream: []byte("SSH-2.0-OpenSSH_9.6\r\n")},
		{name: "a frame too long", stream: []byte("R\x7f\xff\xff\xff")},
		{name: "input first", stream: execproto.AppendFrame(nil, execproto.FrameStdin, []byte("x")), refused: "must be a request"},
		{name: "not JSON", stream: execproto.AppendFrame(nil, execproto.FrameRequest, []byte("{")), refused: "parse request"},
		{name: "a future version", stream: execproto.AppendFrame(nil, execproto.FrameRequest, []byte(`{"version":99}`)), refused: "version 99"},
		{name: "a NUL in the command", stream: execproto.AppendFrame(nil, execproto.FrameRequest, []byte(`{"version":1,"command":"a\u0000"}`)), refused: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := dial(t, addr)
			s.conn.Write(tt.stream)
			if cw, ok := s.conn.(*net.TCPConn); ok {
				cw.CloseWrite()
			}
			r := s.readAll(nil)
			if r.accepted || r.started || r.exit != nil {
				t.Fatalf("garbage was taken for a request: %+v", r)
			}
			if !strings.Contains(r.refused, tt.refused) {
				t.Errorf("refused with %q, want %q", r.refused, tt.refused)
			}
		})
	}

	// Input beyond the window ends the session and its program.
	s := dial(t, addr)
	s.request(execproto.Request{Command: "exec sleep 600"})
	for range execproto.InputWindow/execproto.MaxPayload + 1 {
		execproto.WriteFrame(s.conn, execproto.FrameStdin, make([]byte, execproto.MaxPayload))
	}
	if r := s.readAll(nil); r.exit != nil || r.err == nil {
		t.Errorf("a session that overran its window went on: %+v", r)
	}

	// The server still serves.
	if r := run(t, addr, "echo fine", nil); r.stdout.String() != "fine\n" {
		t.Errorf("after the garbage: %q", r.stdout.String())
	}
}
