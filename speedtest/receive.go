package speedtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// receive counts what arrives on conn for d from the first byte, in
// intervals, reading into buf. It returns when the window is over or the
// sender stops early; the connection is then left with no read deadline.
func receive(conn net.Conn, dir Direction, d, interval time.Duration, buf []byte) (Result, error) {
	conn.SetReadDeadline(time.Now().Add(startTimeout))
	n, err := conn.Read(buf)
	if err != nil {
		return Result{}, fmt.Errorf("wait for data: %w", err)
	}
	start := time.Now()
	count := int((d + interval - 1) / interval)
	r := Result{Direction: dir, Bytes: int64(n), Intervals: make([]Interval, count)}
	for i := range r.Intervals {
		r.Intervals[i] = Interval{Start: time.Duration(i) * interval, End: min(time.Duration(i+1)*interval, d)}
	}
	r.Intervals[0].Bytes = int64(n)

	conn.SetReadDeadline(start.Add(d))
	var elapsed time.Duration
	for {
		n, err := conn.Read(buf)
		elapsed = time.Since(start)
		if n > 0 {
			r.Bytes += int64(n)
			r.Intervals[min(int(elapsed/interval), count-1)].Bytes += int64(n)
		}
		if err == nil {
			continue
		}
		if isTimeout(err) || errors.Is(err, io.EOF) {
			break
		}
		return Result{}, fmt.Errorf("receive: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	r.Duration = min(elapsed, d)
	if elapsed < d {
		// The sender stopped early: drop the intervals that never began,
		// and end the current one where the data did.
		last := min(int(elapsed/interval), count-1)
		r.Intervals = r.Intervals[:last+1]
		r.Intervals[last].End = elapsed
	}
	return r, nil
}

// isTimeout reports whether err is a deadline passing. Not only
// os.ErrDeadlineExceeded: gVisor's netstack connections, which the tunnel
// hands out, report their own net.Error with Timeout() true.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// send writes buf to conn until a write fails, which is how the sender
// learns that the receiver is done. It reports how many bytes it wrote, for
// logs only.
func send(conn net.Conn, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := conn.Write(buf)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}
