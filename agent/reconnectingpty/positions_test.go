package reconnectingpty_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/ptyproto"
)

// positionsServer serves sessions with positions (ServePositions).
func positionsServer(t *testing.T, opts reconnectingpty.Options) (srv *reconnectingpty.Server, addr string) {
	t.Helper()
	return positionsServerWith(t, opts, nil)
}

// positionsServerWith is positionsServer after setup, if any, has changed
// the server.
func positionsServerWith(t *testing.T, opts reconnectingpty.Options, setup func(*reconnectingpty.Server)) (srv *reconnectingpty.Server, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = reconnectingpty.New(opts)
	if setup != nil {
		setup(srv)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServePositions(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, reconnectingpty.ErrServerClosed) {
			t.Errorf("ServePositions returned %v, want ErrServerClosed", err)
		}
	})
	return srv, l.Addr().String()
}

// positioned is a client at AgentTerminalPort: it records where its output
// started and everything read since.
type positioned struct {
	t        *testing.T
	conn     *ptyproto.Conn
	attached ptyproto.Attached
	out      chan []byte
	buf      bytes.Buffer
}

func attachAt(t *testing.T, addr string, h ptyproto.Header) *positioned {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, a, err := ptyproto.AttachAt(ctx, nc, h)
	if err != nil {
		t.Fatal(err)
	}
	p := &positioned{t: t, conn: c, attached: a, out: make(chan []byte, 1024)}
	go func() {
		defer close(p.out)
		for {
			b := make([]byte, 4096)
			n, err := c.Read(b)
			if n > 0 {
				p.out <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return p
}

// waitFor reads until the output so far matches re.
func (p *positioned) waitFor(re string) {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(testTimeout)
	for !rx.Match(p.buf.Bytes()) {
		select {
		case b, ok := <-p.out:
			if !ok {
				p.t.Fatalf("output ended before matching %q: %q", re, p.buf.String())
			}
			p.buf.Write(b)
		case <-deadline:
			p.t.Fatalf("output never matched %q: %q", re, p.buf.String())
		}
	}
}

// TestResume: a client that names where it left a session's output gets
// the output from there on, without the replay; one that names another
// instance of the session, or an offset the scrollback no longer holds,
// gets the replay, marked so.
func TestResume(t *testing.T) {
	_, addr := positionsServer(t, reconnectingpty.Options{ScrollbackSize: 4 << 10})
	h := ptyproto.Header{ID: "resume", Height: 24, Width: 80}

	a := attachAt(t, addr, h)
	if !a.attached.Replay || a.attached.Offset != 0 || a.attached.Instance == "" {
		t.Fatalf("a new session answered %+v, want a replay from offset 0 with an instance", a.attached)
	}
	a.conn.Write([]byte("echo \"fir\"\"st-mark\"\n"))
	a.waitFor(`first-mark\r?\n`)
	left := ptyproto.Position{Instance: a.attached.Instance, Offset: uint64(a.buf.Len())}
	a.conn.Close()

	// Output the first client never saw, through another.
	b := attachAt(t, addr, h)
	b.conn.Write([]byte("echo \"sec\"\"ond-mark\"\n"))
	b.waitFor(`second-mark\r?\n`)

	resumed := h
	resumed.Resume = &left
	c := attachAt(t, addr, resumed)
	if c.attached.Replay || c.attached.Position != left {
		t.Fatalf("resuming at %+v answered %+v, want that position without a replay", left, c.attached)
	}
	c.waitFor(`second-mark\r?\n`)
	if bytes.Contains(c.buf.Bytes(), []byte("first-mark")) {
		t.Errorf("the resumed output repeats what the client had: %q", c.buf.String())
	}
	// The bytes are those the session sent at those offsets.
	whole := b.buf.Bytes()
	from := int(left.Offset - b.attached.Offset)
	if from < 0 || !bytes.HasPrefix(whole[from:], c.buf.Bytes()[:min(c.buf.Len(), len(whole)-from)]) {
		t.Errorf("resumed output %q is not the session's output from offset %d (%q)", c.buf.String(), left.Offset, whole)
	}

	for name, pos := range map[string]ptyproto.Position{
		"another instance":      {Instance: "0123456789abcdef", Offset: left.Offset},
		"beyond the output":     {Instance: left.Instance, Offset: 1 << 40},
		"before the scrollback": {Instance: left.Instance, Offset: 0},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "before the scrollback" {
				// Push the first output out of the 4 KiB scrollback.
				b.conn.Write([]byte("head -c 9000 /dev/zero | tr '\\\\0' x; echo; echo \"fil\"\"led\"\n"))
				b.waitFor(`filled\r?\n`)
			}
			r := h
			r.Resume = &pos
			d := attachAt(t, addr, r)
			if !d.attached.Replay || d.attached.Instance != left.Instance {
				t.Errorf("resuming at %+v answered %+v, want a replay of instance %s", pos, d.attached, left.Instance)
			}
		})
	}
}

// TestPositionsOnOldPort: the plain port answers no position, as before.
func TestPositionsOnOldPort(t *testing.T) {
	ts := startServer(t, reconnectingpty.Options{})
	nc, err := net.DialTimeout("tcp", ts.addr, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := ptyproto.Attach(ctx, nc, ptyproto.Header{ID: "old", Command: "echo \"pla\"\"in\""})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	out, _ := io.ReadAll(c)
	if !regexp.MustCompile(`^plain\r?\n`).Match(out) {
		t.Errorf("the plain port sent %q, want the output alone", out)
	}
}
