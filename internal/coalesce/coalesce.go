// Package coalesce gives a stream connection fewer, larger writes and
// reads, for protocols that write many small pieces.
//
// An SSH connection through the tunnel is such a protocol: x/crypto/ssh
// writes every packet (at most 32 KiB of channel data, the most OpenSSH
// accepts) with a flush of its own, and each flush reaches the conn as two
// writes (its 4 KiB buffer, then the rest). The tunnel's userspace TCP
// does work per call and sends what one call gave it as its own segments,
// so a stream of 4 and 28 KiB writes costs it far more per byte than the
// 128 KiB writes of `tether speedtest`. Conn hands the writes to a
// goroutine of its own, which writes whatever has gathered while its
// previous write ran: nothing waits when the path is idle, and under load
// the writes grow to Options.WriteSize by themselves. Reads go through a
// buffer of Options.ReadSize, so the SSH transport's small reads (a 4-byte
// length, then the packet) cost the tunnel one call per buffer instead of
// two or three per packet.
package coalesce

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// Default sizes. Through a direct tunnel on loopback, 256 KiB gathered
// writes moved about as much as the tunnel alone (see the README's
// performance section, and bench's ssh rows to measure again).
const (
	DefaultWriteSize = 256 << 10
	DefaultReadSize  = 64 << 10
)

// DefaultCloseTimeout bounds how long Close waits to deliver what was
// written before it, when the peer takes nothing.
const DefaultCloseTimeout = 5 * time.Second

// Options size a Conn's buffers. The zero value uses the defaults.
type Options struct {
	// WriteSize is the most a Write may leave pending; further Writes wait
	// until the conn has taken it. 0 means DefaultWriteSize.
	WriteSize int
	// ReadSize is the read buffer's size. 0 means DefaultReadSize.
	ReadSize int
	// CloseTimeout bounds how long Close and CloseWrite wait for the
	// underlying conn to take what is pending. 0 means DefaultCloseTimeout.
	CloseTimeout time.Duration
}

// Conn wraps a net.Conn. A Write returns once its bytes are pending, before
// the underlying conn has taken them; an error of the underlying conn is
// returned by the Writes after it. Close and CloseWrite deliver what is
// pending first (within Options.CloseTimeout). Deadlines apply to the underlying
// conn: a write deadline bounds the goroutine's writes, not Write.
type Conn struct {
	net.Conn
	r            *bufio.Reader
	writeSize    int
	closeTimeout time.Duration

	mu      sync.Mutex
	cond    *sync.Cond // signalled on every change below
	pending []byte     // guarded by mu; written next
	spare   []byte     // guarded by mu; the buffer being written, for reuse
	err     error      // guarded by mu; the underlying conn's write error, sticky
	closed  bool       // guarded by mu; Close was called: the goroutine ends once pending is empty
	done    chan struct{}
}

// New wraps c and starts the goroutine that writes to it; Close ends it.
func New(c net.Conn, opts Options) *Conn {
	if opts.WriteSize <= 0 {
		opts.WriteSize = DefaultWriteSize
	}
	if opts.ReadSize <= 0 {
		opts.ReadSize = DefaultReadSize
	}
	if opts.CloseTimeout <= 0 {
		opts.CloseTimeout = DefaultCloseTimeout
	}
	cc := &Conn{
		Conn:         c,
		r:            bufio.NewReaderSize(c, opts.ReadSize),
		writeSize:    opts.WriteSize,
		closeTimeout: opts.CloseTimeout,
		done:         make(chan struct{}),
	}
	cc.cond = sync.NewCond(&cc.mu)
	go cc.writeLoop()
	return cc
}

// Read reads through the buffer.
func (c *Conn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write queues p for the underlying conn. It waits while WriteSize bytes
// are pending.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		for c.err == nil && !c.closed && len(c.pending) >= c.writeSize {
			c.cond.Wait()
		}
		switch {
		case c.err != nil:
			return n, c.err
		case c.closed:
			return n, net.ErrClosed
		}
		k := min(len(p), c.writeSize-len(c.pending))
		c.pending = append(c.pending, p[:k]...)
		p = p[k:]
		n += k
		c.cond.Broadcast()
	}
	return n, nil
}

// writeLoop writes what is pending, all of it at once, until Close has
// been called and nothing is left, or the underlying conn fails.
func (c *Conn) writeLoop() {
	defer close(c.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for len(c.pending) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.pending) == 0 {
			return // closed, and everything delivered
		}
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if err != nil {
			c.err = err
			c.pending = nil
			c.cond.Broadcast()
			return
		}
		c.cond.Broadcast()
	}
}

// CloseWrite delivers what is pending (within Options.CloseTimeout) and then
// half-closes the underlying conn, where it supports that (otherwise it
// closes it). Writes after it fail.
func (c *Conn) CloseWrite() error {
	c.stop()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Close delivers what is pending (within Options.CloseTimeout) and closes the
// underlying conn. To cut a connection short, close the underlying conn
// instead: the pending bytes are then dropped.
func (c *Conn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// stop refuses further writes and waits until what is pending has been
// written, or the close timeout has passed, or the underlying conn failed.
func (c *Conn) stop() {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
	c.Conn.SetWriteDeadline(time.Now().Add(c.closeTimeout))
	<-c.done
}
