package servegroup_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherdev/tether/internal/servegroup"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait; the tests wait on conditions, never for
// a fixed time.
const testTimeout = 10 * time.Second

// await fails the test unless ch is closed or sent on within testTimeout.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// serve runs g.Serve(l, handle) and returns where its error will arrive.
func serve(g *servegroup.Group, l net.Listener, handle func(net.Conn)) <-chan error {
	done := make(chan error, 1)
	go func() { done <- g.Serve(l, handle) }()
	return done
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// readEOF fails the test unless the far end of c closes it.
func readEOF(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the server's close: %v, want EOF", err)
	}
}

// echoOnce answers one byte with the same byte and returns, which ends
// the connection.
func echoOnce(c net.Conn) {
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err == nil {
		c.Write(b)
	}
}

func TestServeClosesEachConnectionAfterItsHandler(t *testing.T) {
	var g servegroup.Group
	l := listen(t)
	done := serve(&g, l, echoOnce)
	for i := range 3 {
		c := dial(t, l)
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, b, err)
		}
		readEOF(t, c)
	}
	g.Close()
	if err := await(t, done, "Serve"); !errors.Is(err, servegroup.ErrClosed) {
		t.Fatalf("Serve after Close: %v, want ErrClosed", err)
	}
	g.Wait()
}

func TestCloseEndsListenersAndConnections(t *testing.T) {
	var g servegroup.Group
	l1, l2 := listen(t), listen(t)
	started := make(chan struct{}, 2)
	ended := make(chan error, 2)
	block := func(c net.Conn) {
		started <- struct{}{}
		_, err := c.Read(make([]byte, 1)) // until Close closes c
		ended <- err
	}
	done1, done2 := serve(&g, l1, block), serve(&g, l2, block)
	c1, c2 := dial(t, l1), dial(t, l2)
	await(t, started, "the first handler")
	await(t, started, "the second handler")

	g.Close()
	for _, done := range []<-chan error{done1, done2} {
		if err := await(t, done, "Serve"); !errors.Is(err, servegroup.ErrClosed) {
			t.Fatalf("Serve after Close: %v, want ErrClosed", err)
		}
	}
	for range 2 {
		if err := await(t, ended, "a handler's read"); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("handler's read after Close: %v, want net.ErrClosed", err)
		}
	}
	g.Wait()
	readEOF(t, c1)
	readEOF(t, c2)
	if !g.Closed() {
		t.Fatal("Closed() = false after Close")
	}
}

func TestClosedGroupRefuses(t *testing.T) {
	tests := []struct {
		name string
		stop func(*servegroup.Group)
	}{
		{"Close", (*servegroup.Group).Close},
		{"StopAccepting", (*servegroup.Group).StopAccepting},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g servegroup.Group
			tc.stop(&g)
			if !g.Closed() {
				t.Fatal("Closed() = false")
			}
			handled := func(net.Conn) { t.Error("handler ran on a closed group") }

			l := listen(t)
			if err := await(t, serve(&g, l, handled), "Serve"); !errors.Is(err, servegroup.ErrClosed) {
				t.Fatalf("Serve: %v, want ErrClosed", err)
			}
			if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept on the listener Serve refused: %v, want net.ErrClosed", err)
			}

			mine, theirs := net.Pipe()
			defer theirs.Close()
			if g.ServeConn(mine, handled) {
				t.Fatal("ServeConn = true")
			}
			theirs.SetDeadline(time.Now().Add(testTimeout))
			readEOF(t, theirs)
			g.Wait()
		})
	}
}

// lateListener returns from Accept only what is sent on conns, whether or
// not it is closed: a connection the kernel accepted just as the server
// closed.
type lateListener struct {
	accepting chan struct{}
	conns     chan net.Conn
}

func (l *lateListener) Accept() (net.Conn, error) {
	l.accepting <- struct{}{}
	return <-l.conns, nil
}
func (l *lateListener) Close() error   { return nil }
func (l *lateListener) Addr() net.Addr { return &net.TCPAddr{} }

func TestConnectionAcceptedAsTheGroupClosesIsClosed(t *testing.T) {
	var g servegroup.Group
	l := &lateListener{accepting: make(chan struct{}), conns: make(chan net.Conn)}
	done := serve(&g, l, func(net.Conn) { t.Error("handler ran on a closed group") })
	await(t, l.accepting, "Accept")
	g.Close()
	mine, theirs := net.Pipe()
	defer theirs.Close()
	l.conns <- mine
	if err := await(t, done, "Serve"); !errors.Is(err, servegroup.ErrClosed) {
		t.Fatalf("Serve: %v, want ErrClosed", err)
	}
	theirs.SetDeadline(time.Now().Add(testTimeout))
	readEOF(t, theirs)
	g.Wait()
}

func TestListenerFailureIsNotErrClosed(t *testing.T) {
	var g servegroup.Group
	l := listen(t)
	done := serve(&g, l, echoOnce)
	l.Close() // before or after Serve registers it: either way Accept fails
	err := await(t, done, "Serve")
	if errors.Is(err, servegroup.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after its listener failed: %v, want the accept error", err)
	}
	if g.Closed() {
		t.Fatal("a failed listener closed the group")
	}
	g.Close()
	g.Wait()
}

func TestStopAcceptingLetsConnectionsFinish(t *testing.T) {
	var g servegroup.Group
	l := listen(t)
	started := make(chan struct{})
	done := serve(&g, l, func(c net.Conn) {
		close(started)
		echoOnce(c)
	})
	c := dial(t, l)
	await(t, started, "the handler")

	g.StopAccepting()
	if err := await(t, done, "Serve"); !errors.Is(err, servegroup.ErrClosed) {
		t.Fatalf("Serve after StopAccepting: %v, want ErrClosed", err)
	}
	// The connection is still served.
	if _, err := c.Write([]byte{7}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 7 {
		t.Fatalf("echo after StopAccepting: %v %v", b, err)
	}
	readEOF(t, c)
	g.Wait()
}

func TestServeConnRunsOnTheCaller(t *testing.T) {
	var g servegroup.Group
	mine, theirs := net.Pipe()
	defer theirs.Close()
	theirs.SetDeadline(time.Now().Add(testTimeout))
	served := make(chan bool, 1)
	go func() { served <- g.ServeConn(mine, echoOnce) }()
	if _, err := theirs.Write([]byte{9}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(theirs, b); err != nil || b[0] != 9 {
		t.Fatalf("echo: %v %v", b, err)
	}
	if !await(t, served, "ServeConn") {
		t.Fatal("ServeConn = false on an open group")
	}
	readEOF(t, theirs) // closed when the handler returned
	g.Wait()
}

func TestWaitWaitsForGo(t *testing.T) {
	var g servegroup.Group
	release := make(chan struct{})
	var mu sync.Mutex
	var finished []string
	mine, theirs := net.Pipe()
	defer theirs.Close()
	served := make(chan bool, 1)
	go func() {
		served <- g.ServeConn(mine, func(net.Conn) {
			g.Go(func() {
				<-release
				g.Go(func() {
					mu.Lock()
					finished = append(finished, "nested")
					mu.Unlock()
				})
				mu.Lock()
				finished = append(finished, "outer")
				mu.Unlock()
			})
		})
	}()
	await(t, served, "ServeConn")

	waited := make(chan struct{})
	go func() {
		g.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned before the goroutine Go started")
	default:
	}
	close(release)
	await(t, waited, "Wait")
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 2 {
		t.Fatalf("Wait returned with %v finished, want both", finished)
	}
}

// TestServeReturnsTheServersOwnError: a group that names its closed error
// returns it from Serve, both for a Serve running at Close and for one
// started after, so that a server need not translate ErrClosed.
func TestServeReturnsTheServersOwnError(t *testing.T) {
	errOwn := errors.New("myserver: server closed")
	g := servegroup.Group{ClosedErr: errOwn}
	done := serve(&g, listen(t), echoOnce)
	g.Close()
	if err := await(t, done, "Serve"); err != errOwn {
		t.Fatalf("Serve at Close: %v, want the group's own error", err)
	}
	if err := await(t, serve(&g, listen(t), echoOnce), "Serve"); err != errOwn {
		t.Fatalf("Serve after Close: %v, want the group's own error", err)
	}
	g.Wait()
}
