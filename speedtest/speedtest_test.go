package speedtest_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether/speedtest"
)

const testTimeout = 20 * time.Second

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// serve runs a Server on a loopback listener until the test ends. wrap,
// if set, wraps each accepted connection.
func serve(t testing.TB, srv *speedtest.Server, wrap func(net.Conn) net.Conn) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		if wrap == nil {
			if *srv == (speedtest.Server{}) {
				done <- speedtest.Serve(ctx, ln)
				return
			}
			done <- srv.Serve(ctx, ln)
			return
		}
		done <- srv.Serve(ctx, wrapListener{ln, wrap})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoopback(t *testing.T) {
	tests := []struct {
		name string
		cfg  speedtest.Config
		wrap func(net.Conn) net.Conn // on both ends
	}{
		{name: "down", cfg: speedtest.Config{Direction: speedtest.Down, Duration: 300 * time.Millisecond, Interval: 100 * time.Millisecond}},
		{name: "up", cfg: speedtest.Config{Direction: speedtest.Up, Duration: 300 * time.Millisecond, Interval: 100 * time.Millisecond}},
		{name: "uneven intervals", cfg: speedtest.Config{Direction: speedtest.Up, Duration: 250 * time.Millisecond, Interval: 100 * time.Millisecond}},
		{name: "netstack timeouts down", cfg: speedtest.Config{Direction: speedtest.Down, Duration: 200 * time.Millisecond, Interval: 100 * time.Millisecond}, wrap: netstackErrors},
		{name: "netstack timeouts up", cfg: speedtest.Config{Direction: speedtest.Up, Duration: 200 * time.Millisecond, Interval: 100 * time.Millisecond}, wrap: netstackErrors},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			addr := serve(t, &speedtest.Server{}, tt.wrap)
			conn := dial(t, addr)
			if tt.wrap != nil {
				conn = tt.wrap(conn)
			}
			r, err := speedtest.Run(ctx, conn, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Direction != tt.cfg.Direction {
				t.Errorf("direction %q, want %q", r.Direction, tt.cfg.Direction)
			}
			// How fast is the benchmark's business; here only that bytes
			// arrived and were counted.
			if r.Bytes == 0 || r.Throughput() <= 0 {
				t.Errorf("%d bytes at %.0f B/s, want some", r.Bytes, r.Throughput())
			}
			if r.Duration <= 0 || r.Duration > tt.cfg.Duration {
				t.Errorf("duration %v, want within (0, %v]", r.Duration, tt.cfg.Duration)
			}
			want := int((tt.cfg.Duration + tt.cfg.Interval - 1) / tt.cfg.Interval)
			if len(r.Intervals) != want {
				t.Fatalf("%d intervals, want %d", len(r.Intervals), want)
			}
			var sum int64
			for i, iv := range r.Intervals {
				// An interval may be empty on a loaded machine (the
				// sender was not scheduled), so only their sum is checked.
				sum += iv.Bytes
				if i > 0 && iv.Start != r.Intervals[i-1].End {
					t.Errorf("interval %d starts at %v, previous ends at %v", i, iv.Start, r.Intervals[i-1].End)
				}
			}
			if last := r.Intervals[len(r.Intervals)-1]; last.End != tt.cfg.Duration {
				t.Errorf("last interval ends at %v, want %v", last.End, tt.cfg.Duration)
			}
			if sum != r.Bytes {
				t.Errorf("intervals sum to %d bytes, result says %d", sum, r.Bytes)
			}
			t.Logf("%s: %.0f MB/s", tt.name, r.Throughput()/1e6)
		})
	}
}

// netstackErrors makes conn report deadlines the way gVisor's gonet does:
// a net.Error whose Timeout is true, not os.ErrDeadlineExceeded.
func netstackErrors(conn net.Conn) net.Conn { return gonetLike{conn} }

type gonetLike struct{ net.Conn }

type gonetTimeout struct{}

func (gonetTimeout) Error() string   { return "i/o timeout" }
func (gonetTimeout) Timeout() bool   { return true }
func (gonetTimeout) Temporary() bool { return true }

func (c gonetLike) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = &net.OpError{Op: "read", Net: "tcp", Err: gonetTimeout{}}
	}
	return n, err
}

func (c gonetLike) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = &net.OpError{Op: "write", Net: "tcp", Err: gonetTimeout{}}
	}
	return n, err
}

// throttledConn lets through at most rate bytes per second on reads.
type throttledConn struct {
	net.Conn
	rate  int64
	start time.Time
	read  atomic.Int64
}

func (c *throttledConn) Read(p []byte) (int, error) {
	// Stay on schedule: wait until the bytes read so far are due. The
	// sleeps here are the throttle itself, not waits for a condition.
	if c.start.IsZero() {
		c.start = time.Now()
	}
	due := c.start.Add(time.Duration(float64(c.read.Load()) / float64(c.rate) * float64(time.Second)))
	time.Sleep(time.Until(due))
	p = p[:min(len(p), 16<<10)]
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// countingConn counts what is written to it.
type countingConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// TestMeasuresArrivals uploads to a server that reads slowly: the result
// must be the slow reader's rate, although the client wrote more into
// socket buffers.
func TestMeasuresArrivals(t *testing.T) {
	ctx := testContext(t)
	const rate = 4 << 20 // bytes per second
	addr := serve(t, &speedtest.Server{}, func(c net.Conn) net.Conn {
		return &throttledConn{Conn: c, rate: rate}
	})
	conn := &countingConn{Conn: dial(t, addr)}
	d := 500 * time.Millisecond
	r, err := speedtest.Run(ctx, conn, speedtest.Config{Direction: speedtest.Up, Duration: d, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Throughput()
	if got < rate/2 || got > rate*3/2 {
		t.Errorf("measured %.2f MB/s, want about the reader's %.2f MB/s", got/1e6, float64(rate)/1e6)
	}
	written := conn.written.Load()
	t.Logf("arrived %d bytes, written %d", r.Bytes, written)
	if written <= r.Bytes {
		t.Errorf("the client wrote %d bytes and the result counts %d: buffers should hold some back", written, r.Bytes)
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		srv  speedtest.Server
		cfg  speedtest.Config
		want string
	}{
		{name: "too long", srv: speedtest.Server{MaxDuration: time.Second}, cfg: speedtest.Config{Duration: 2 * time.Second}, want: "server refused the test: duration 2s"},
		{name: "interval too short (client side)", cfg: speedtest.Config{Duration: time.Second, Interval: time.Millisecond}, want: "interval 1ms is shorter"},
		{name: "bad direction (client side)", cfg: speedtest.Config{Direction: "sideways"}, want: "unknown direction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			addr := serve(t, &tt.srv, nil)
			_, err := speedtest.Run(ctx, dial(t, addr), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestServerValidates sends raw requests that a client would not, and
// checks the server's refusal.
func TestServerValidates(t *testing.T) {
	header := func(version, dir byte, durationMS, intervalMS uint32) []byte {
		b := []byte{'T', 'S', 'P', 'D', version, dir}
		b = binary.BigEndian.AppendUint32(b, durationMS)
		return binary.BigEndian.AppendUint32(b, intervalMS)
	}
	tests := []struct {
		name string
		req  []byte
		want string
	}{
		{name: "not the protocol", req: []byte("GET / HTTP/1.1\r\n\r\n"), want: "not a speed test request"},
		{name: "future version", req: header(2, 'd', 1000, 100), want: "unsupported speed test version 2"},
		{name: "bad direction", req: header(1, 'x', 1000, 100), want: "unknown direction"},
		{name: "zero duration", req: header(1, 'u', 0, 100), want: "duration 0s"},
		{name: "interval too short", req: header(1, 'u', 1000, 1), want: "shorter than"},
		{name: "too many intervals", req: header(1, 'd', 100000, 10), want: "more than 1000 intervals"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, &speedtest.Server{}, nil)
			conn := dial(t, addr)
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(testTimeout))
			if _, err := conn.Write(tt.req); err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(conn)
			if len(b) < 3 || b[0] != 1 || int(binary.BigEndian.Uint16(b[1:])) != len(b)-3 {
				t.Fatalf("server answered %q, want a refusal", b)
			}
			if msg := string(b[3:]); !strings.Contains(msg, tt.want) {
				t.Errorf("refusal %q does not say %q", msg, tt.want)
			}
		})
	}
}

// TestCancel checks that Run returns promptly when its context ends, and
// that the server shuts down with a test in progress.
func TestCancel(t *testing.T) {
	for _, dir := range []speedtest.Direction{speedtest.Down, speedtest.Up} {
		t.Run(string(dir), func(t *testing.T) {
			ctx := testContext(t)
			addr := serve(t, &speedtest.Server{}, nil)
			rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := speedtest.Run(rctx, dial(t, addr), speedtest.Config{Direction: dir, Duration: time.Minute})
			if err != context.DeadlineExceeded {
				t.Errorf("Run = %v, want the context's error", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Run took %v after its context ended", d)
			}
		})
	}
}

// BenchmarkLoopback reports loopback TCP throughput through the protocol.
func BenchmarkLoopback(b *testing.B) {
	for _, dir := range []speedtest.Direction{speedtest.Down, speedtest.Up} {
		b.Run(string(dir), func(b *testing.B) {
			ctx := testContext(b)
			addr := serve(b, &speedtest.Server{}, nil)
			var total float64
			for b.Loop() {
				r, err := speedtest.Run(ctx, dial(b, addr), speedtest.Config{Direction: dir, Duration: 500 * time.Millisecond, Interval: 100 * time.Millisecond})
				if err != nil {
					b.Fatal(err)
				}
				total += r.Throughput()
			}
			b.ReportMetric(total/float64(b.N)/1e6, "MB/s")
		})
	}
}
