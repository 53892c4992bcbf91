// Package speedtest is a small throughput test between a CLI and a
// workspace agent, run over one TCP connection through the tunnel (the agent
// serves it on tether.AgentSpeedtestPort).
//
// The protocol:
//
//	client → server  header: "TSPD", version (1 byte), direction ('u' or
//	                 'd'), duration and interval in milliseconds (uint32
//	                 big-endian each): 14 bytes.
//	server → client  status: 0 to go ahead, or 1 followed by a uint16
//	                 length and a message saying what was wrong.
//	then             the sender streams bytes; the receiver counts what
//	                 arrives from its first byte for the duration, in
//	                 intervals, and then ends the stream:
//	  down (server sends)  the client closes the connection when its
//	                       window is over; the server's writes then fail.
//	  up (client sends)    the server sends the Result (uint32 length, then
//	                       JSON) when its window is over, and reads until
//	                       the client, having stopped sending, closes.
//
// Only the receiver's count is reported, so the figures are what arrived,
// not what was written into socket buffers; bytes still in flight when the
// window closes are not counted.
package speedtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Direction says which way the bytes flow.
type Direction string

const (
	Down Direction = "down" // from the server (the agent) to the client
	Up   Direction = "up"   // from the client to the server
)

// Protocol constants.
const (
	version    = 1
	headerSize = 14
	statusOK   = 0
	statusErr  = 1
)

var magic = [4]byte{'T', 'S', 'P', 'D'}

// Limits the server enforces on a request.
const (
	MinInterval  = 10 * time.Millisecond
	MaxIntervals = 1000
	// DefaultMaxDuration is the longest test a Server runs when its
	// MaxDuration is zero.
	DefaultMaxDuration = 5 * time.Minute
)

// Defaults the client uses for a Config's zero fields.
const (
	DefaultDuration = 5 * time.Second
	DefaultInterval = time.Second
)

// Timeouts that keep a silent or vanished peer from holding a connection.
const (
	// startTimeout bounds the wait for the header, the status, and the
	// first byte of data.
	startTimeout = 10 * time.Second
	// endTimeout bounds what happens after the receiver's window: the
	// result and the closing of the connection.
	endTimeout = 10 * time.Second
)

// bufSize is the size of each side's one buffer: large writes and reads
// keep system calls (and netstack's per-call costs) out of the figure.
const bufSize = 128 << 10

// maxResultSize bounds the JSON result a client accepts.
const maxResultSize = 1 << 20

// Result is what the receiver measured.
type Result struct {
	Direction Direction `json:"direction"`
	// Bytes arrived within the window.
	Bytes int64 `json:"bytes"`
	// Duration is the window: from the first byte to the end of counting.
	Duration time.Duration `json:"duration"`
	// Intervals divide the window, in order.
	Intervals []Interval `json:"intervals"`
}

// Interval is the part of a Result between two offsets from its start.
type Interval struct {
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	Bytes int64         `json:"bytes"`
}

// Throughput returns the average rate over the window, in bytes per second.
func (r Result) Throughput() float64 { return rate(r.Bytes, r.Duration) }

// Throughput returns the rate within the interval, in bytes per second.
func (i Interval) Throughput() float64 { return rate(i.Bytes, i.End-i.Start) }

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// header is a client's request.
type header struct {
	dir      Direction
	duration time.Duration
	interval time.Duration
}

func (h header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, magic[:])
	b[4] = version
	b[5] = 'd'
	if h.dir == Up {
		b[5] = 'u'
	}
	binary.BigEndian.PutUint32(b[6:], uint32(h.duration.Milliseconds()))
	binary.BigEndian.PutUint32(b[10:], uint32(h.interval.Milliseconds()))
	return b
}

func parseHeader(b []byte, maxDuration time.Duration) (header, error) {
	var h header
	if [4]byte(b[:4]) != magic {
		return h, errors.New("not a speed test request")
	}
	if b[4] != version {
		return h, fmt.Errorf("unsupported speed test version %d, want %d", b[4], version)
	}
	switch b[5] {
	case 'u':
		h.dir = Up
	case 'd':
		h.dir = Down
	default:
		return h, fmt.Errorf("unknown direction %q", b[5])
	}
	h.duration = time.Duration(binary.BigEndian.Uint32(b[6:])) * time.Millisecond
	h.interval = time.Duration(binary.BigEndian.Uint32(b[10:])) * time.Millisecond
	return h, h.check(maxDuration)
}

func (h header) check(maxDuration time.Duration) error {
	switch {
	case h.duration <= 0 || h.duration > maxDuration:
		return fmt.Errorf("duration %v is not within (0, %v]", h.duration, maxDuration)
	case h.interval < MinInterval:
		return fmt.Errorf("interval %v is shorter than %v", h.interval, MinInterval)
	case h.duration/h.interval > MaxIntervals:
		return fmt.Errorf("%v in intervals of %v is more than %d intervals", h.duration, h.interval, MaxIntervals)
	}
	return nil
}
