package coalesce

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of these tests.
const testTimeout = 10 * time.Second

// gateConn records the writes it takes; each write waits until the test
// opens the gate for it.
type gateConn struct {
	net.Conn // nil: only Write, deadlines and Close are used
	gate     chan struct{}
	entered  chan struct{} // a write is waiting at the gate

	mu     sync.Mutex
	writes [][]byte
	closed bool
}

func newGateConn() *gateConn {
	return &gateConn{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
}

func (g *gateConn) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes = append(g.writes, bytes.Clone(p))
	return len(p), nil
}

func (g *gateConn) Read(p []byte) (int, error)       { return 0, io.EOF }
func (g *gateConn) SetWriteDeadline(time.Time) error { return nil }
func (g *gateConn) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return nil
}

func (g *gateConn) recorded() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.writes...)
}

func waitChan(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestWritesGatherWhileOneIsUnderway is the point of the package: what is
// written while the underlying conn is busy goes out in one write.
func TestWritesGatherWhileOneIsUnderway(t *testing.T) {
	g := newGateConn()
	c := New(g, Options{WriteSize: 1 << 10})
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	waitChan(t, g.entered, "the first write") // now busy at the gate
	for _, s := range []string{"a", "bb", "ccc"} {
		if _, err := c.Write([]byte(s)); err != nil { // pending; must not wait
			t.Fatal(err)
		}
	}
	g.gate <- struct{}{}
	waitChan(t, g.entered, "the second write")
	g.gate <- struct{}{}
	close(g.gate) // let Close through
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := g.recorded()
	want := []string{"first", "abbccc"}
	if len(got) != len(want) {
		t.Fatalf("writes = %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("writes = %q, want %q", got, want)
		}
	}
	if !g.closed {
		t.Error("Close did not close the underlying conn")
	}
}

// sizeConn records the largest write it took.
type sizeConn struct {
	net.Conn
	mu  sync.Mutex
	max int
}

func (s *sizeConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.max = max(s.max, len(p))
	s.mu.Unlock()
	return s.Conn.Write(p)
}

// TestWriteWaitsWhenFull checks the bound: a Write of many times WriteSize
// waits for the conn rather than pending more than WriteSize, and every
// byte arrives once, in order.
func TestWriteWaitsWhenFull(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	sc := &sizeConn{Conn: a}
	c := New(sc, Options{WriteSize: 16})
	defer c.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB: 64 times the bound
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		wrote <- err
	}()
	b.SetReadDeadline(time.Now().Add(testTimeout))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the bytes arrived changed or out of order")
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.max > 16 {
		t.Fatalf("the conn got a write of %d bytes; WriteSize is 16", sc.max)
	}
}

// TestCloseDeliversPending checks that bytes written just before Close
// reach the peer: the SSH server's last bytes (exit status, channel close)
// must not be lost.
func TestCloseDeliversPending(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := New(a, Options{})
	if _, err := c.Write([]byte("exit-status 0")); err != nil {
		t.Fatal(err)
	}
	read := make(chan []byte, 1)
	go func() {
		b.SetReadDeadline(time.Now().Add(testTimeout))
		all, _ := io.ReadAll(b)
		read <- all
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(<-read); got != "exit-status 0" {
		t.Fatalf("peer read %q", got)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// TestCloseGivesUpOnADeadPeer checks that Close returns within its timeout
// when the peer takes nothing.
func TestCloseGivesUpOnADeadPeer(t *testing.T) {
	a, b := net.Pipe() // nobody reads b
	defer b.Close()
	c := New(a, Options{CloseTimeout: 50 * time.Millisecond})
	if _, err := c.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	waitChan(t, closed, "Close with a peer that reads nothing")
}

// TestWriteErrorIsReported checks that a failure of the underlying conn
// reaches the writer on a later Write rather than vanishing.
func TestWriteErrorIsReported(t *testing.T) {
	a, b := net.Pipe()
	c := New(a, Options{})
	defer c.Close()
	b.Close() // the peer is gone: the next underlying write fails
	deadline := time.Now().Add(testTimeout)
	for {
		if _, err := c.Write([]byte("x")); err != nil {
			if !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("Write = %v, want the underlying io.ErrClosedPipe", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Write never reported the underlying conn's failure")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCloseWriteHalfCloses checks that CloseWrite delivers what is pending
// and then half-closes, so that the peer sees EOF and can still answer.
func TestCloseWriteHalfCloses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	replied := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			replied <- err
			return
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(testTimeout))
		got, err := io.ReadAll(s) // until the half-close
		if err == nil {
			_, err = s.Write([]byte("got " + string(got)))
		}
		replied <- err
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := New(raw, Options{})
	defer c.Close()
	c.Write([]byte("request"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	raw.SetReadDeadline(time.Now().Add(testTimeout))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "got request" {
		t.Fatalf("reply = %q", got)
	}
	if err := <-replied; err != nil {
		t.Fatal(err)
	}
}

func TestWaitReadable(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if ok, err := WaitReadable(r, time.Millisecond); ok || err != nil {
		t.Fatalf("empty pipe: WaitReadable = %v, %v; want false, nil", ok, err)
	}
	w.WriteString("x")
	if ok, err := WaitReadable(r, time.Millisecond); !ok || err != nil {
		t.Fatalf("pipe with a byte: WaitReadable = %v, %v; want true, nil", ok, err)
	}
	r.Close()
	if _, err := WaitReadable(r, time.Millisecond); err == nil {
		t.Fatal("closed pipe: WaitReadable gave no error")
	}
}
