package speedtest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"
)

// Config is one speed test. The zero value is a five-second download in
// one-second intervals.
type Config struct {
	Direction Direction     // Down or Up; zero means Down
	Duration  time.Duration // zero means DefaultDuration
	Interval  time.Duration // zero means DefaultInterval
}

// Run runs one speed test over conn, a fresh connection to a Server, and
// closes conn. The Result is what the receiving side counted.
func Run(ctx context.Context, conn net.Conn, cfg Config) (Result, error) {
	defer conn.Close()
	h := header{dir: cfg.Direction, duration: cfg.Duration, interval: cfg.Interval}
	if h.dir == "" {
		h.dir = Down
	}
	if h.dir != Down && h.dir != Up {
		return Result{}, fmt.Errorf("unknown direction %q", h.dir)
	}
	if h.duration == 0 {
		h.duration = DefaultDuration
	}
	if h.interval == 0 {
		h.interval = DefaultInterval
	}
	h.interval = min(h.interval, h.duration)
	if err := h.check(time.Duration(1<<32-1) * time.Millisecond); err != nil {
		return Result{}, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	r, err := run(conn, h)
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	return r, err
}

func run(conn net.Conn, h header) (Result, error) {
	conn.SetDeadline(time.Now().Add(startTimeout))
	if _, err := conn.Write(h.marshal()); err != nil {
		return Result{}, fmt.Errorf("send request: %w", err)
	}
	var status [3]byte
	if _, err := io.ReadFull(conn, status[:1]); err != nil {
		return Result{}, fmt.Errorf("read status: %w", err)
	}
	if status[0] != statusOK {
		if _, err := io.ReadFull(conn, status[1:]); err != nil {
			return Result{}, fmt.Errorf("read refusal: %w", err)
		}
		msg := make([]byte, binary.BigEndian.Uint16(status[1:]))
		if _, err := io.ReadFull(conn, msg); err != nil {
			return Result{}, fmt.Errorf("read refusal: %w", err)
		}
		return Result{}, fmt.Errorf("server refused the test: %s", msg)
	}
	conn.SetDeadline(time.Time{})
	buf := make([]byte, bufSize)

	if h.dir == Down {
		// Closing (deferred in Run) is what tells the server to stop.
		return receive(conn, Down, h.duration, h.interval, buf)
	}

	// Up: send until the result arrives. The result's arrival interrupts
	// the sender, which may be blocked on a full window, through the
	// write deadline.
	sent := make(chan error, 1)
	conn.SetWriteDeadline(time.Now().Add(startTimeout + h.duration + endTimeout))
	go func() {
		_, err := send(conn, buf)
		sent <- err
	}()
	r, err := readResult(conn, h.duration)
	conn.SetWriteDeadline(time.Now())
	<-sent // its error says only that it was stopped, or why readResult failed
	return r, err
}

func readResult(conn net.Conn, d time.Duration) (Result, error) {
	conn.SetReadDeadline(time.Now().Add(startTimeout + d + endTimeout))
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return Result{}, fmt.Errorf("read result: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > maxResultSize {
		return Result{}, fmt.Errorf("result of %d bytes is too large", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(conn, b); err != nil {
		return Result{}, fmt.Errorf("read result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("decode result: %w", err)
	}
	return r, nil
}
