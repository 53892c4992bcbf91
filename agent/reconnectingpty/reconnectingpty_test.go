package reconnectingpty_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/ptyproto"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

type testServer struct {
	srv    *reconnectingpty.Server
	addr   string
	served chan error
}

func startServer(t *testing.T, opts reconnectingpty.Options) *testServer {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith starts a server after setup, if any, has changed it.
func startServerWith(t *testing.T, opts reconnectingpty.Options, setup func(*reconnectingpty.Server)) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: reconnectingpty.New(opts), addr: l.Addr().String(), served: make(chan error, 1)}
	if setup != nil {
		setup(ts.srv)
	}
	go func() { ts.served <- ts.srv.Serve(l) }()
	t.Cleanup(func() { ts.close(t) })
	return ts
}

// close stops the server and checks that Serve returned as documented.
// It may run twice.
func (ts *testServer) close(t *testing.T) {
	t.Helper()
	ts.srv.Close()
	select {
	case err, ok := <-ts.served:
		if ok && !errors.Is(err, reconnectingpty.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if ok {
			close(ts.served)
		}
	case <-time.After(testTimeout):
		t.Error("Serve did not return after Close")
	}
}

// maxKept bounds the output a term keeps.
const maxKept = 1 << 20

// term is an attached client whose output is collected in the background.
type term struct {
	t    *testing.T
	conn *ptyproto.Conn
	done chan struct{} // closed at EOF

	mu  sync.Mutex
	out bytes.Buffer
}

func attach(t *testing.T, ts *testServer, h ptyproto.Header) *term {
	t.Helper()
	nc, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := ptyproto.Attach(ctx, nc, h)
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{t: t, conn: c, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			if tm.out.Len() > maxKept {
				// Keep the tail only: the tests look at recent output, and
				// some produce megabytes.
				tail := append([]byte(nil), tm.out.Bytes()[tm.out.Len()-maxKept/2:]...)
				tm.out.Reset()
				tm.out.Write(tail)
			}
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(tm.close)
	return tm
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// close disconnects and waits for the reader to end.
func (tm *term) close() {
	tm.conn.Close()
	<-tm.done
}

func (tm *term) send(format string, args ...any) {
	tm.t.Helper()
	if _, err := fmt.Fprintf(tm.conn, format, args...); err != nil {
		tm.t.Fatal(err)
	}
}

// waitFor polls until the output matches re and returns the first
// submatch (or the whole match).
func (tm *term) waitFor(re string) string {
	tm.t.Helper()
	return tm.waitForWithin(re, testTimeout)
}

// waitForWithin is waitFor with its own deadline, for output that takes
// long to produce on a loaded machine.
func (tm *term) waitForWithin(re string, within time.Duration) string {
	tm.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(within)
	for {
		if m := rx.FindStringSubmatch(tm.output()); m != nil {
			return m[len(m)-1]
		}
		if time.Now().After(deadline) {
			out := tm.output()
			tm.t.Fatalf("output never matched %q; its last 2 KiB:\n%q", re, out[max(0, len(out)-2048):])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitEOF waits for the server to close the connection.
func (tm *term) waitEOF() {
	tm.t.Helper()
	select {
	case <-tm.done:
	case <-time.After(testTimeout):
		tm.t.Fatalf("connection still open; output:\n%q", tm.output())
	}
}

// Commands print markers that the shell assembles, so that the terminal's
// echo of the command line never matches them.

func TestReconnect(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	h := ptyproto.Header{ID: "reload", Height: 24, Width: 80}

	a := attach(t, ts, h)
	a.send("X=42; echo \"hel\"\"lo PID=[$$]\"\n")
	pid := a.waitFor(`hello PID=\[(\d+)\]`)
	a.close()

	b := attach(t, ts, h)
	// The scrollback replays what the first client saw, before anything new.
	b.waitFor(`hello PID=\[` + pid + `\]`)
	b.send("echo \"X=[$X] PID2=[$$]\"\n")
	if got := b.waitFor(`X=\[(\d*)\] PID2`); got != "42" {
		t.Errorf("variable after reconnect = %q, want 42 (a new shell?)", got)
	}
	if got := b.waitFor(`PID2=\[(\d+)\]`); got != pid {
		t.Errorf("shell pid after reconnect = %s, want %s", got, pid)
	}
	if n := ts.srv.SessionCount(); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

func TestResize(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	h := ptyproto.Header{ID: "resize", Height: 30, Width: 100}
	a := attach(t, ts, h)
	a.send("echo \"S1=[$(stty size)]\"\n")
	if got := a.waitFor(`S1=\[([\d ]+)\]`); got != "30 100" {
		t.Errorf("initial size = %q, want 30 100", got)
	}
	if err := a.conn.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	a.send("echo \"S2=[$(stty size)]\"\n")
	if got := a.waitFor(`S2=\[([\d ]+)\]`); got != "40 120" {
		t.Errorf("size after resize = %q, want 40 120", got)
	}
	a.close()

	// Attaching with another size resizes the terminal to it.
	b := attach(t, ts, ptyproto.Header{ID: "resize", Height: 50, Width: 132})
	b.send("echo \"S3=[$(stty size)]\"\n")
	if got := b.waitFor(`S3=\[([\d ]+)\]`); got != "50 132" {
		t.Errorf("size after reattach = %q, want 50 132", got)
	}
}

func TestExitEndsSession(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	h := ptyproto.Header{ID: "exit", Height: 24, Width: 80}
	a := attach(t, ts, h)
	a.send("echo \"PID=[$$]\"\n")
	pid := a.waitFor(`PID=\[(\d+)\]`)
	a.send("exit\n")
	a.waitEOF()
	waitSessions(t, ts, 0)

	// The id is free again: a new shell starts.
	b := attach(t, ts, h)
	b.send("echo \"PID=[$$]\"\n")
	if got := b.waitFor(`PID=\[(\d+)\]`); got == pid {
		t.Errorf("same shell (pid %s) after it exited", pid)
	}
	if strings.Contains(b.output(), "PID=["+pid+"]") {
		t.Error("new session replayed the old session's output")
	}
}

func waitSessions(t *testing.T, ts *testServer, want int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for ts.srv.SessionCount() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", ts.srv.SessionCount(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommand(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{Env: []string{"TETHER_WORKSPACE=dev"}})
	a := attach(t, ts, ptyproto.Header{
		ID:      "cmd",
		Command: `echo "one $TETHER $TETHER_WORKSPACE $TERM"; tty; echo two`,
	})
	a.waitEOF()
	out := a.output()
	for _, want := range []string{"one true dev xterm-256color\r\n", "/dev/pts/", "two\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	waitSessions(t, ts, 0)
}

func TestSharedSession(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	h := ptyproto.Header{ID: "shared", Height: 24, Width: 80}
	a := attach(t, ts, h)
	a.send("echo \"re\"\"ady\"\n")
	a.waitFor(`ready`)
	b := attach(t, ts, h)
	b.waitFor(`ready`)

	b.send("echo \"from \"\"b\"\n")
	a.waitFor(`from b`)
	b.waitFor(`from b`)
	a.send("echo \"from \"\"a\"\n")
	a.waitFor(`from a`)
	b.waitFor(`from a`)
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{IdleTimeout: 200 * time.Millisecond})
	h := ptyproto.Header{ID: "idle", Height: 24, Width: 80}
	a := attach(t, ts, h)
	a.send("echo \"PID=[$$]\"\n")
	pid := a.waitFor(`PID=\[(\d+)\]`)

	// While a client is attached, the timeout does not apply. The wait is
	// deliberate: the idle timer must not fire while a is attached.
	time.Sleep(400 * time.Millisecond)
	a.send("echo \"still \"\"here\"\n")
	a.waitFor(`still here`)
	a.close()

	waitSessions(t, ts, 0)
	var n int
	fmt.Sscan(pid, &n)
	if err := syscall.Kill(n, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("shell %d still exists after the idle timeout (kill: %v)", n, err)
	}
}

func TestUTF8(t *testing.T) {
	// A scrollback small enough to be cut, and output full of multi-byte
	// characters, so that the cut lands inside one most of the time.
	ts := startServer(t, reconnectingpty.Options{ScrollbackSize: 1001})
	h := ptyproto.Header{ID: "utf8", Height: 24, Width: 80}
	a := attach(t, ts, h)
	a.send("printf 'h\\303\\251llo w\\303\\266rld \\342\\234\\223 %%s\\n' done\n")
	a.waitFor(`héllo wörld ✓ done`)
	a.send("for i in $(seq 1 50); do printf '\\342\\234\\223\\303\\251'; done; echo \"EN\"\"D\"\n")
	a.waitFor(`END`)
	a.close()

	b := attach(t, ts, h)
	b.waitFor(`END`)
	if replay := b.output(); !utf8.ValidString(replay) {
		t.Errorf("replay is not valid UTF-8: %q", replay)
	}
	b.send("echo \"ä\"\"=[ä]\"\n")
	b.waitFor(`ä=\[ä\]`)
}

func TestUnknownFrameSkipped(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	nc, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	// A header, a frame of a type the server does not know, then input.
	frame := func(typ byte, payload string) string {
		return string([]byte{typ, byte(len(payload) >> 8), byte(len(payload))}) + payload
	}
	msg := "{\"id\":\"raw\",\"height\":24,\"width\":80}\n" +
		frame('z', "abc") +
		frame('d', "echo \"un\"\"known\"\n") +
		frame('d', "exit\n")
	if _, err := io.WriteString(nc, msg); err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "unknown") {
		t.Errorf("output %q lacks the command's output", out)
	}
}

func TestBadHeader(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	tests := []struct {
		name   string
		header string
		want   string
	}{
		{name: "not json", header: "hello\n", want: "parse header"},
		{name: "no id", header: `{"height": 24}` + "\n", want: "session id is empty"},
		{name: "too long", header: strings.Repeat("x", 5000) + "\n", want: "header is longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", ts.addr, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(testTimeout))
			go io.WriteString(nc, tt.header)
			out, _ := io.ReadAll(nc)
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("server said %q, want it to mention %q", out, tt.want)
			}
		})
	}
	if n := ts.srv.SessionCount(); n != 0 {
		t.Errorf("%d sessions after bad headers, want 0", n)
	}
}

func TestClose(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	a := attach(t, ts, ptyproto.Header{ID: "close", Height: 24, Width: 80})
	a.send("echo \"PID=[$$]\"\n")
	pid := a.waitFor(`PID=\[(\d+)\]`)

	ts.close(t)
	a.waitEOF()
	var n int
	fmt.Sscan(pid, &n)
	if err := syscall.Kill(n, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("shell %d still exists after Close (kill: %v)", n, err)
	}
}

// TestStalledClientDropped checks that a client that stops reading is
// disconnected instead of stalling the session for the others.
func TestStalledClientDropped(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	h := ptyproto.Header{ID: "stall", Height: 24, Width: 80}
	a := attach(t, ts, h)
	a.send("echo \"re\"\"ady\"\n")
	a.waitFor(`ready`)

	// b attaches and never reads.
	nc, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	b, err := ptyproto.Attach(ctx, nc, h)
	if err != nil {
		t.Fatal(err)
	}

	// Far more output than b's queue and the socket buffers (a few MiB)
	// hold. a's reader
	// keeps only the tail, so that the test does not scan megabytes.
	a.send("head -c 32000000 /dev/zero | tr '\\0' x; echo; echo \"EN\"\"D\"\n")
	// 32 MB through a PTY took over 30 s once, with every agent package
	// testing at once on two cores.
	a.waitForWithin(`END`, 3*testTimeout)

	// b was let go: it reads what was queued for it, then EOF.
	b.SetDeadline(time.Now().Add(testTimeout))
	n, err := io.Copy(io.Discard, b)
	if err != nil {
		t.Fatalf("stalled client: %v after %d bytes, want EOF", err, n)
	}
	if n >= 32000000 {
		t.Errorf("stalled client got all %d bytes; it was never dropped", n)
	}
}
