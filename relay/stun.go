package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"tailscale.com/net/stun"
)

// STUN is the STUN servers of a relay's region: peers ask them which
// address and port their packets come from, the candidates for direct
// paths. The DERP map names one port for the whole region (the first
// server's), so every address should listen on the same port unless the
// first is the only one peers use.
//
// They answer every well-formed binding request (RFC 5389), not only
// Tailscale's: the library's own server (tailscale.com/net/stunserver)
// ignores requests without its SOFTWARE attribute and FINGERPRINT, which
// are the ones browsers and the agent's WebRTC stack send, so the web
// terminal's direct path had no server-reflexive candidates and never
// crossed a NAT.
type STUN struct {
	conns  []*net.UDPConn
	port   int
	logger *slog.Logger
	wg     sync.WaitGroup
}

// ListenSTUN starts a STUN server on each UDP address (host:port; port 0
// picks a free one) and serves until Close. It fails, having started
// nothing, if any address cannot be listened on.
func ListenSTUN(addrs []string, logger *slog.Logger) (*STUN, error) {
	if len(addrs) == 0 {
		return nil, errors.New("relay: no STUN address to listen on")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &STUN{logger: logger}
	for _, addr := range addrs {
		c, err := listenUDP(addr)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("STUN server on %s: %w", addr, err)
		}
		s.conns = append(s.conns, c)
		if s.port == 0 {
			s.port = c.LocalAddr().(*net.UDPAddr).Port
		}
	}
	for _, c := range s.conns {
		logger.Info(fmt.Sprintf("STUN server listening on %v", c.LocalAddr()))
		s.wg.Go(func() { s.serve(c) })
	}
	return s, nil
}

func listenUDP(addr string) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return net.ListenUDP("udp", ua)
}

// stunHeaderLen is the length of a STUN message's header.
const stunHeaderLen = 20

// bindingRequestTxID returns the transaction of a binding request, and
// whether pkt is one: a STUN header (stun.Is) of type Binding Request
// whose length is that of the attributes that follow, which are not
// looked at (an answer carries only the address seen).
func bindingRequestTxID(pkt []byte) (stun.TxID, bool) {
	if !stun.Is(pkt) || binary.BigEndian.Uint16(pkt[0:2]) != 0x0001 {
		return stun.TxID{}, false
	}
	n := int(binary.BigEndian.Uint16(pkt[2:4]))
	if n%4 != 0 || stunHeaderLen+n != len(pkt) {
		return stun.TxID{}, false
	}
	var tx stun.TxID
	copy(tx[:], pkt[8:stunHeaderLen])
	return tx, true
}

// serve answers binding requests on c until c is closed.
func (s *STUN) serve(c *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (an ICMP error reported on the socket):
			// not worth spinning on.
			s.logger.Debug("STUN read", slog.Any("err", err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		tx, ok := bindingRequestTxID(buf[:n])
		if !ok {
			continue
		}
		res := stun.Response(tx, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		if _, err := c.WriteToUDPAddrPort(res, from); err != nil {
			s.logger.Debug("STUN answer", slog.Any("err", err), slog.String("to", from.String()))
		}
	}
}

// Port is the port peers should ask: that of the first address.
func (s *STUN) Port() int { return s.port }

// Addrs are the addresses the servers listen on, in the order given.
func (s *STUN) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.conns))
	for i, c := range s.conns {
		out[i] = c.LocalAddr()
	}
	return out
}

// Close stops the servers and waits for them.
func (s *STUN) Close() {
	for _, c := range s.conns {
		c.Close()
	}
	s.wg.Wait()
}
