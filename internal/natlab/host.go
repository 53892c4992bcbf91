package natlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
)

// A Host is one machine of the lab: a network namespace with one interface,
// eth0, and a default route to its router (or to the internet, if Public).
// Its methods are safe for concurrent use.
type Host struct {
	lab  *Lab
	site *site
	name string
	ns   string
	ip   netip.Addr
}

func (h *Host) String() string {
	if h.site.kind == Public {
		return fmt.Sprintf("%s: %s (Public) in netns %s", h.name, h.ip, h.ns)
	}
	return fmt.Sprintf("%s: %s behind %s (%v) in netns %s, router netns %s", h.name, h.ip, h.site.wan, h.site.kind, h.ns, h.site.fwNS)
}

// Name returns the name given to AddHost or AddLANHost.
func (h *Host) Name() string { return h.name }

// Kind returns the kind of router in front of the host.
func (h *Host) Kind() RouterKind { return h.site.kind }

// Namespace returns the name of the host's network namespace, for
// `ip netns exec` and for debugging.
func (h *Host) Namespace() string { return h.ns }

// IP returns the host's own address: on its LAN, or its public address if
// it is Public.
func (h *Host) IP() netip.Addr { return h.ip }

// PublicIP returns the address the internet sees the host's traffic come
// from: its router's WAN address, or its own if it is Public.
func (h *Host) PublicIP() netip.Addr { return h.site.wan }

// Command returns a command that runs name inside the host's namespace,
// through `ip netns exec` (which execs name, so the process's pid is
// name's own and ctx's cancellation kills name itself). Processes still
// running when the lab is cleaned up are killed.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
}

// Run calls fn on an OS thread inside the host's namespace and returns its
// error. Sockets fn creates stay in the namespace for their whole life and
// can be used from any goroutine afterwards; goroutines fn starts do not run
// in the namespace. Name resolution is not namespace-aware (Go may resolve
// on other threads), so use IP literals.
func (h *Host) Run(fn func() error) error {
	return inNamespace(h.ns, fn)
}

// Listen listens on the host, like net.Listen. address must use an IP
// literal or leave the host empty.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	if err := checkLiteral(address); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := h.Run(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// ListenPacket listens on the host, like net.ListenPacket. address must use
// an IP literal or leave the host empty.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	if err := checkLiteral(address); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := h.Run(func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	return pc, err
}

// DialContext connects from the host, like net.Dialer.DialContext. address
// must be an IP literal and port: with a name, Go may dial from another
// thread, outside the namespace.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err != nil {
		return nil, fmt.Errorf("natlab: dial %q: need an IP literal and port: %w", address, err)
	}
	var c net.Conn
	err := h.Run(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

func checkLiteral(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("natlab: listen %q: %w", address, err)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("natlab: listen %q: need an IP literal: %w", address, err)
	}
	return nil
}

// BlockUDP makes the host's router drop all UDP it would forward, both
// ways and including flows already established, or stops doing so. On a
// Public host it drops the UDP the host sends and receives (loopback
// excepted). Hosts on one LAN share their router, so this affects them all.
// It adds to what the router kind does: an UDPBlocked router keeps blocking.
func (h *Host) BlockUDP(block bool) error {
	if err := h.site.setBlockUDP(block); err != nil {
		return fmt.Errorf("natlab: block udp on %s: %w", h.name, err)
	}
	return nil
}

// SetLoss makes the host's router drop permille/1000 of the packets it
// forwards, at random, in both directions; 0 stops it. On a Public host it
// applies to what the host sends and receives. Hosts on one LAN share their
// router, so this affects them all.
func (h *Host) SetLoss(permille int) error {
	if err := h.site.setLoss(permille); err != nil {
		return fmt.Errorf("natlab: set loss on %s: %w", h.name, err)
	}
	return nil
}
