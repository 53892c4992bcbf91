package agent

import (
	"context"
	"errors"
	"github.com/tetherdev/tether/internal/join"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// The agent forwards tunnel ports that it does not serve itself to the same
// port on the workspace's loopback, so that `tether port-forward` reaches
// whatever listens there.

// dialTimeout bounds connecting to a workspace port.
const dialTimeout = 10 * time.Second

// udpIdleTimeout ends a forwarded UDP flow that has been quiet this long.
const udpIdleTimeout = 2 * time.Minute

// forwardTCP connects an inbound tunnel connection to 127.0.0.1:port (or
// [::1]:port if only that listens) and copies both ways until either side
// closes.
func (a *Agent) forwardTCP(conn net.Conn, dst netip.AddrPort) {
	defer conn.Close()
	ctx, cancel := context.WithTimeout(a.ctx, dialTimeout)
	local, err := dialLoopback(ctx, "tcp", dst.Port())
	cancel()
	if err != nil {
		a.logger.Debug("forward TCP: nothing listens", slog.Int("port", int(dst.Port())), slog.Any("err", err))
		return
	}
	defer local.Close()
	join.Conns(conn, local)
}

// dialLoopback dials port on IPv4 loopback, then IPv6 loopback.
func dialLoopback(ctx context.Context, network string, port uint16) (net.Conn, error) {
	var d net.Dialer
	p := strconv.Itoa(int(port))
	c, err := d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", p))
	if err == nil {
		return c, nil
	}
	if c6, err6 := d.DialContext(ctx, network, net.JoinHostPort("::1", p)); err6 == nil {
		return c6, nil
	}
	return nil, err
}

// forwardUDP relays one UDP flow (datagrams from one peer address and port)
// to 127.0.0.1:port and the replies back, until neither side has sent
// anything for udpIdleTimeout.
func (a *Agent) forwardUDP(conn net.Conn, dst netip.AddrPort) {
	defer conn.Close()
	local, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(dst.Port())})
	if err != nil {
		a.logger.Debug("forward UDP", slog.Int("port", int(dst.Port())), slog.Any("err", err))
		return
	}
	defer local.Close()
	var lastActive atomic.Int64
	lastActive.Store(time.Now().UnixNano())
	// copy moves datagrams from src to dst until src fails for a reason
	// other than a quiet spell while the flow is still active.
	copy := func(dst, src net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			src.SetReadDeadline(time.Now().Add(udpIdleTimeout))
			n, err := src.Read(buf)
			switch {
			case err == nil:
				lastActive.Store(time.Now().UnixNano())
				dst.Write(buf[:n])
			case errors.Is(err, syscall.ECONNREFUSED):
				// Nothing listens on the workspace port (yet): drop.
			case errors.Is(err, os.ErrDeadlineExceeded) &&
				time.Since(time.Unix(0, lastActive.Load())) < udpIdleTimeout:
				// The other direction is busy: keep the flow.
			default:
				return
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		copy(conn, local)
		conn.Close()
	}()
	copy(local, conn)
	local.Close()
	<-done
}
