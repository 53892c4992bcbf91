package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"tailscale.com/types/nettype"

	"github.com/tetherdev/tether"
)

// DialContext connects to a peer's tunnel address over "tcp" or "udp".
//
// It first waits until the peer is known and answers a path-discovery ping
// (AwaitReachable), because a WireGuard handshake sent before both peers
// hold their relay connection is lost and retried only after 5 seconds.
// So it also works when called before the peer's node has arrived: it waits
// for it until ctx ends.
func (c *Conn) DialContext(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
	switch network {
	case "tcp", "tcp6", "udp", "udp6":
	default:
		return nil, fmt.Errorf("dial %s %s: unsupported network", network, addr)
	}
	if !tether.TunnelPrefix.Contains(addr.Addr()) {
		return nil, fmt.Errorf("dial %s %s: not a tunnel address", network, addr)
	}
	if err := c.AwaitReachable(ctx, addr.Addr()); err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	var (
		conn net.Conn
		err  error
	)
	if network[:3] == "tcp" {
		var tc *gonet.TCPConn
		tc, err = c.stack.DialContextTCPWithBind(ctx, c.addr, addr)
		if err == nil {
			conn = tc
		}
	} else {
		var uc *gonet.UDPConn
		uc, err = c.stack.DialContextUDPWithBind(ctx, c.addr, addr)
		if err == nil {
			conn = uc
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	return c.track(conn, netip.AddrPortFrom(c.addr, 0), addr)
}

// Listen listens for TCP connections on port of our tunnel address. Only
// upserted peers can connect.
func (c *Conn) Listen(network string, port uint16) (net.Listener, error) {
	if network != "tcp" && network != "tcp6" {
		return nil, fmt.Errorf("listen %s: unsupported network", network)
	}
	ln, err := c.stack.ListenTCP("tcp6", netip.AddrPortFrom(c.addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("listen tcp %d: %w", port, err)
	}
	l := &listener{Listener: ln, c: c}
	t, err := c.trackCloser(ln, netip.Addr{})
	if err != nil {
		return nil, err
	}
	l.t = t
	return l, nil
}

// ListenPacket listens for UDP datagrams on port of our tunnel address.
// Only upserted peers can send to it.
func (c *Conn) ListenPacket(port uint16) (net.PacketConn, error) {
	pc, err := c.stack.ListenPacket("udp6", netip.AddrPortFrom(c.addr, port).String())
	if err != nil {
		return nil, fmt.Errorf("listen udp %d: %w", port, err)
	}
	p := &packetConn{PacketConn: pc}
	t, err := c.trackCloser(pc, netip.Addr{})
	if err != nil {
		return nil, err
	}
	p.t = t
	return p, nil
}

// SetForwardTCP sets the handler of inbound TCP connections to ports that
// have no Listener; dst is the port they were sent to on our address. The
// connection is already accepted when fn runs; fn owns it and must close
// it. Nil (the default) refuses such connections with a reset, so nothing
// reaches the host unless asked for.
func (c *Conn) SetForwardTCP(fn func(conn net.Conn, dst netip.AddrPort)) {
	c.mu.Lock()
	c.forwardTCP = fn
	c.mu.Unlock()
}

// SetForwardUDP sets the handler of inbound UDP flows to ports that have no
// ListenPacket. A flow is the datagrams from one peer address and port to
// one of our ports: conn reads them one per Read and Write sends datagrams
// back to that sender. fn owns conn and must close it, typically after an
// idle timeout, as UDP has no end. Nil (the default) drops such datagrams.
func (c *Conn) SetForwardUDP(fn func(conn net.Conn, dst netip.AddrPort)) {
	c.mu.Lock()
	c.forwardUDP = fn
	c.mu.Unlock()
}

// tcpHandlerForFlow is netstack's hook for a SYN that no listener took.
// It always intercepts: netstack's default would forward the connection to
// the host's loopback, which only the agent wants and only on purpose.
func (c *Conn) tcpHandlerForFlow(src, dst netip.AddrPort) (func(net.Conn), bool) {
	c.mu.Lock()
	fn := c.forwardTCP
	c.mu.Unlock()
	if fn == nil || dst.Addr() != c.addr {
		return nil, true // reset
	}
	return func(conn net.Conn) {
		tc, err := c.track(conn, dst, src)
		if err != nil {
			return
		}
		fn(tc, dst)
	}, true
}

// udpHandlerForFlow is the same for UDP.
func (c *Conn) udpHandlerForFlow(src, dst netip.AddrPort) (func(nettype.ConnPacketConn), bool) {
	c.mu.Lock()
	fn := c.forwardUDP
	c.mu.Unlock()
	if fn == nil || dst.Addr() != c.addr {
		return nil, true // drop
	}
	return func(conn nettype.ConnPacketConn) {
		uc, err := c.track(conn, dst, src)
		if err != nil {
			return
		}
		fn(uc, dst)
	}, true
}

// Connections and listeners are tracked so that RemovePeer can end a
// removed peer's connections at once (rather than after TCP gives up) and
// Close can end everything.

// tracked is one listener or connection the Conn will close.
type tracked struct {
	c      *Conn
	closer interface{ Close() error }
	remote netip.Addr // the peer's address; invalid for listeners
	once   sync.Once
}

// close closes the thing and forgets it.
func (t *tracked) close() error {
	t.c.mu.Lock()
	delete(t.c.closers, t)
	t.c.mu.Unlock()
	return t.closeUntracked()
}

func (t *tracked) closeUntracked() error {
	err := net.ErrClosed
	t.once.Do(func() { err = t.closer.Close() })
	return err
}

func (c *Conn) trackCloser(cl interface{ Close() error }, remote netip.Addr) (*tracked, error) {
	t := &tracked{c: c, closer: cl, remote: remote}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		cl.Close()
		return nil, errClosed
	}
	c.closers[t] = struct{}{}
	return t, nil
}

// closeConnsTo closes the connections with the peer at addr.
func (c *Conn) closeConnsTo(addr netip.Addr) {
	var ts []*tracked
	c.mu.Lock()
	for t := range c.closers {
		if t.remote == addr {
			ts = append(ts, t)
			delete(c.closers, t)
		}
	}
	c.mu.Unlock()
	for _, t := range ts {
		t.closeUntracked()
	}
}

// track wraps conn, whose addresses are local and remote, so that closing
// it untracks it. netstack's connections report nil addresses until their
// handshake completes, so the wrapper reports the ones we know.
func (c *Conn) track(conn net.Conn, local, remote netip.AddrPort) (net.Conn, error) {
	cn := &trackedConn{Conn: conn, local: local, remote: remote}
	t, err := c.trackCloser(conn, remote.Addr())
	if err != nil {
		return nil, err
	}
	cn.t = t
	if tc, ok := conn.(*gonet.TCPConn); ok {
		return &tcpConn{trackedConn: cn, tc: tc}, nil
	}
	return cn, nil
}

type trackedConn struct {
	net.Conn
	t             *tracked
	local, remote netip.AddrPort
}

func (c *trackedConn) Close() error { return c.t.close() }

func (c *trackedConn) LocalAddr() net.Addr {
	if a := c.Conn.LocalAddr(); a != nil {
		return a
	}
	return addrFor(c.Conn, c.local)
}

func (c *trackedConn) RemoteAddr() net.Addr {
	if a := c.Conn.RemoteAddr(); a != nil {
		return a
	}
	return addrFor(c.Conn, c.remote)
}

func addrFor(conn net.Conn, ap netip.AddrPort) net.Addr {
	if _, ok := conn.(*gonet.TCPConn); ok {
		return net.TCPAddrFromAddrPort(ap)
	}
	return net.UDPAddrFromAddrPort(ap)
}

// tcpConn keeps the half-close methods that SSH and port forwarding use.
type tcpConn struct {
	*trackedConn
	tc *gonet.TCPConn
}

func (c *tcpConn) CloseRead() error  { return c.tc.CloseRead() }
func (c *tcpConn) CloseWrite() error { return c.tc.CloseWrite() }

type listener struct {
	net.Listener
	c *Conn
	t *tracked
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		remote := addrPortOf(conn.RemoteAddr())
		local := addrPortOf(conn.LocalAddr())
		tc, err := l.c.track(conn, local, remote)
		if errors.Is(err, errClosed) {
			return nil, net.ErrClosed
		}
		if err == nil {
			return tc, nil
		}
	}
}

func (l *listener) Close() error { return l.t.close() }

type packetConn struct {
	net.PacketConn
	t *tracked
}

func (p *packetConn) Close() error { return p.t.close() }

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}
