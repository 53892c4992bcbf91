package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// firstByteTimeout bounds the wait for the first byte of a transfer or an
// echo, which includes tunnel setup through a fresh port forward.
const firstByteTimeout = 20 * time.Second

// server serves every connection of a listener with one handler until it is
// closed.
type server struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// serve runs handle on each connection ln accepts.
func serve(ln net.Listener, handle func(net.Conn)) *server {
	s := &server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				handle(c)
			}()
		}
	}()
	return s
}

// port is the TCP port the server listens on.
func (s *server) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// close stops accepting, ends every connection and waits for the handlers.
func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// source writes to the connection as fast as it can until the peer goes.
func source(c net.Conn) {
	buf := make([]byte, 128<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// echo writes back what it reads.
func echo(c net.Conn) { io.Copy(c, c) }

// receive reads from conn for d, counted from its first byte, and returns
// the rate in bytes per second. Only what the receiver got counts, so bytes
// still in buffers at the end are not mistaken for throughput.
func receive(conn net.Conn, d time.Duration) (float64, error) {
	buf := make([]byte, 256<<10)
	conn.SetReadDeadline(time.Now().Add(firstByteTimeout))
	if _, err := conn.Read(buf); err != nil {
		return 0, fmt.Errorf("first byte: %w", err)
	}
	start := time.Now()
	conn.SetReadDeadline(start.Add(d))
	var total int64
	for {
		n, err := conn.Read(buf)
		total += int64(n)
		if isTimeout(err) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("after %d bytes: %w", total, err)
		}
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// drain reads from conn for d to let a path settle (a tunnel goes direct
// once data flows) before the measured transfer.
func drain(conn net.Conn, d time.Duration) error {
	_, err := receive(conn, d)
	return err
}

// measureDownload dials, reads for warm (not counted), and then measures
// runs windows of d, each on a fresh connection. It returns the median
// rate in MB/s (10⁶ bytes per second) and every window's.
func measureDownload(ctx context.Context, dial func(context.Context) (net.Conn, error), warm, d time.Duration, runs int) (float64, []float64, error) {
	if warm > 0 {
		c, err := dial(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("dial: %w", err)
		}
		err = drain(c, warm)
		c.Close()
		if err != nil {
			return 0, nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	var rates []float64
	for range max(runs, 1) {
		c, err := dial(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("dial: %w", err)
		}
		bps, err := receive(c, d)
		c.Close()
		if err != nil {
			return 0, nil, err
		}
		rates = append(rates, bps/1e6)
	}
	return median(rates), rates, nil
}

// receiveWindows reads from conn for n windows of d, one after another on
// the same connection, and returns the median rate and every window's, in
// MB/s.
func receiveWindows(conn net.Conn, d time.Duration, n int) (float64, []float64, error) {
	var rates []float64
	for range max(n, 1) {
		bps, err := receive(conn, d)
		if err != nil {
			return 0, nil, err
		}
		rates = append(rates, bps/1e6)
	}
	return median(rates), rates, nil
}

// ratesNote lists the windows of a figure when there are several.
func ratesNote(rates []float64) string {
	if len(rates) < 2 {
		return ""
	}
	s := make([]string, len(rates))
	for i, r := range rates {
		s[i] = fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("median of %d windows (%s MB/s); ", len(rates), strings.Join(s, ", "))
}

// roundTrips sends n messages of size bytes, one at a time, and returns how
// long each took to come back. It runs for at least warm first (not
// recorded), so that the path has settled.
func roundTrips(conn net.Conn, n, size int, warm time.Duration) ([]time.Duration, error) {
	msg := make([]byte, size)
	buf := make([]byte, size)
	conn.SetDeadline(time.Now().Add(firstByteTimeout + warm + time.Duration(n)*10*time.Millisecond))
	defer conn.SetDeadline(time.Time{})
	one := func() (time.Duration, error) {
		t0 := time.Now()
		if _, err := conn.Write(msg); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	for end := time.Now().Add(warm); time.Now().Before(end); {
		if _, err := one(); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	ds := make([]time.Duration, 0, n)
	for range n {
		d, err := one()
		if err != nil {
			return nil, fmt.Errorf("round trip %d: %w", len(ds), err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// isTimeout reports a deadline error, from the kernel's sockets or
// netstack's (which are net.Errors, not os.ErrDeadlineExceeded).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func dialTCP(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := listenLoopback()
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
