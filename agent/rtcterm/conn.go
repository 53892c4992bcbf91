package rtcterm

import (
	"net"
	"sync"
	"time"

	"github.com/pion/datachannel"
)

// maxMessage is the largest message the agent sends: every browser takes
// 16 KiB.
const maxMessage = 16 << 10

// channelConn is a detached data channel as the byte stream the
// reconnecting PTY serves: each Write is sent as messages of at most
// maxMessage bytes, and Read returns received messages as a stream.
type channelConn struct {
	dc datachannel.ReadWriteCloserDeadliner

	rmu     sync.Mutex // serializes Read
	buf     []byte     // guarded by rmu; a message being read
	pending []byte     // guarded by rmu; what of buf is left
}

func newChannelConn(dc datachannel.ReadWriteCloserDeadliner) *channelConn {
	return &channelConn{dc: dc, buf: make([]byte, 64<<10)}
}

func (c *channelConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		n, err := c.dc.Read(c.buf)
		if err != nil {
			return 0, err
		}
		c.pending = c.buf[:n]
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *channelConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxMessage)]
		if _, err := c.dc.Write(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

func (c *channelConn) Close() error                       { return c.dc.Close() }
func (c *channelConn) LocalAddr() net.Addr                { return channelAddr{} }
func (c *channelConn) RemoteAddr() net.Addr               { return channelAddr{} }
func (c *channelConn) SetReadDeadline(t time.Time) error  { return c.dc.SetReadDeadline(t) }
func (c *channelConn) SetWriteDeadline(t time.Time) error { return c.dc.SetWriteDeadline(t) }
func (c *channelConn) SetDeadline(t time.Time) error {
	c.dc.SetReadDeadline(t)
	return c.dc.SetWriteDeadline(t)
}

// channelAddr names the far end of a data channel in logs.
type channelAddr struct{}

func (channelAddr) Network() string { return "webrtc" }
func (channelAddr) String() string  { return "webrtc data channel" }
