package delayproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers each line with the same line, until the client
// closes its side.
func echoServer(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	return ln
}

func TestProxy(t *testing.T) {
	ln := echoServer(t)
	p, err := Listen("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const delay = 30 * time.Millisecond
	p.SetDelay(delay)

	c, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	const trips = 3
	for i := range trips {
		start := time.Now()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("trip %d: read %q, %v", i, line, err)
		}
		// A lower bound only: the delay is what the proxy adds, and
		// nothing may come back sooner.
		if took := time.Since(start); took < 2*delay {
			t.Fatalf("trip %d took %v, less than twice the one-way delay %v", i, took, delay)
		}
	}
	// A half close passes through: the echo server sees EOF and closes.
	c.(*net.TCPConn).CloseWrite()
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after CloseWrite: read %v, want EOF", err)
	}
	s := p.Stats()
	if s.Conns != 1 || s.ClientFlights != trips || s.ServerFlights != trips {
		t.Fatalf("stats %+v, want 1 connection and %d flights each way", s, trips)
	}
}

// TestCloseEndsConnections: Close ends open connections and returns.
func TestCloseEndsConnections(t *testing.T) {
	ln := echoServer(t)
	p, err := Listen("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(b); err == nil {
		t.Fatal("read after Close succeeded")
	}
}
