package agent

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// TestForwardTCP checks that a tunnel connection to a port reaches what
// listens on the workspace's loopback there, both ways, and that a port
// where nothing listens closes the tunnel connection.
func TestForwardTCP(t *testing.T) {
	a := newAgent(t, http.NotFoundHandler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()

	tunnelSide, agentSide := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.forwardTCP(agentSide, netip.AddrPortFrom(netip.MustParseAddr("fd7a:115c:a1e0::1"), port))
	}()
	local := next(t, testContext(t), accepted, "the forwarded connection")
	ln.Close()
	tunnelSide.SetDeadline(time.Now().Add(testTimeout))
	local.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(tunnelSide, "request")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(local, buf); err != nil || string(buf) != "request" {
		t.Fatalf("the service read %q, %v", buf, err)
	}
	io.WriteString(local, "reply")
	if _, err := io.ReadFull(tunnelSide, buf[:5]); err != nil || string(buf[:5]) != "reply" {
		t.Fatalf("the tunnel read %q, %v", buf[:5], err)
	}
	local.Close()
	tunnelSide.Close()
	<-done

	// The port is closed now: the tunnel connection is closed at once.
	tunnelSide, agentSide = net.Pipe()
	done = make(chan struct{})
	go func() {
		defer close(done)
		a.forwardTCP(agentSide, netip.AddrPortFrom(netip.IPv6Unspecified(), port))
	}()
	tunnelSide.SetDeadline(time.Now().Add(testTimeout))
	if _, err := tunnelSide.Read(buf); err != io.EOF {
		t.Errorf("read from a forward to a closed port = %v, want EOF", err)
	}
	<-done
}

// TestForwardUDP checks that datagrams on a tunnel flow reach the service on
// the workspace's loopback and its replies come back, one for one.
func TestForwardUDP(t *testing.T) {
	a := newAgent(t, http.NotFoundHandler())
	svc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svcDone := make(chan struct{})
	go func() {
		defer close(svcDone)
		buf := make([]byte, 1500)
		for {
			n, from, err := svc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			svc.WriteToUDP(append([]byte("re: "), buf[:n]...), from)
		}
	}()

	// A pipe keeps the boundaries of what is written, as a UDP flow does.
	tunnelSide, agentSide := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.forwardUDP(agentSide, netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(svc.LocalAddr().(*net.UDPAddr).Port)))
	}()
	tunnelSide.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 1500)
	for _, msg := range []string{"one", "two"} {
		if _, err := tunnelSide.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		n, err := tunnelSide.Read(buf)
		if err != nil || string(buf[:n]) != "re: "+msg {
			t.Fatalf("reply to %q = %q, %v", msg, buf[:n], err)
		}
	}
	tunnelSide.Close()
	<-done // the flow ends with the tunnel side
	svc.Close()
	<-svcDone
}
