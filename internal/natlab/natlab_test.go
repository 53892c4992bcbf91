//go:build linux

package natlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// testTimeout bounds each test; lab traffic takes milliseconds.
	testTimeout = 30 * time.Second
	// refuteWait is how long an exchange that must fail gets to show it
	// does. Exchanges that work succeed within milliseconds here.
	refuteWait = 2 * time.Second
	// reflectorPort is where the in-process reflector listens.
	reflectorPort = 3478
	// punchPort is the local port both hole-punching peers bind.
	punchPort = 41641
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// startReflector runs a UDP server on h that answers every datagram with
// "<source address:port>|<datagram>": a STUN server and an echo server in
// one.
func startReflector(t *testing.T, h *Host, ports ...int) {
	t.Helper()
	if len(ports) == 0 {
		ports = []int{reflectorPort}
	}
	var wg sync.WaitGroup
	var pcs []net.PacketConn
	t.Cleanup(func() {
		for _, pc := range pcs {
			pc.Close()
		}
		wg.Wait()
	})
	for _, port := range ports {
		pc, err := h.ListenPacket("udp4", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		pcs = append(pcs, pc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				n, src, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(append([]byte(src.String()+"|"), buf[:n]...), src)
			}
		}()
	}
}

// startTCPEcho runs an in-process TCP echo server on h.
func startTCPEcho(t *testing.T, h *Host, port int) {
	t.Helper()
	ln, err := h.Listen("tcp4", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
}

// udpEcho sends payload to dst every 100ms until the reflector's answer to
// it comes back or ctx ends, and returns the source address the reflector
// saw.
func udpEcho(ctx context.Context, pc net.PacketConn, dst netip.AddrPort, payload []byte) (netip.AddrPort, error) {
	buf := make([]byte, 4096)
	for {
		if err := ctx.Err(); err != nil {
			return netip.AddrPort{}, err
		}
		// Errors such as EMSGSIZE after a "fragmentation needed" are
		// expected in some tests; they simply mean no answer.
		pc.WriteTo(payload, net.UDPAddrFromAddrPort(dst))
		pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			seen, data, ok := bytes.Cut(buf[:n], []byte("|"))
			if ok && bytes.Equal(data, payload) {
				return netip.ParseAddrPort(string(seen))
			}
		}
	}
}

func refutable(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, refuteWait)
}

// tcpEchoCheck sends size random bytes through a TCP echo server and
// checks they come back intact.
func tcpEchoCheck(ctx context.Context, from *Host, dst netip.AddrPort, size int) error {
	c, err := from.DialContext(ctx, "tcp4", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	want := make([]byte, size)
	rand.Read(want)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, want) {
		return errors.New("echo differs")
	}
	return nil
}

// TestMapping checks the NAT behaviour itself: what address the internet
// sees for one socket talking to two destinations.
func TestMapping(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	startReflector(t, srv, reflectorPort, reflectorPort+1)

	tests := []struct {
		kind RouterKind
		// check judges the mappings seen by the two reflector ports.
		check func(h *Host, local, m1, m2 netip.AddrPort) error
	}{
		{Public, func(h *Host, local, m1, m2 netip.AddrPort) error {
			if want := netip.AddrPortFrom(h.IP(), local.Port()); m1 != want || m2 != want {
				return fmt.Errorf("seen as %v and %v, want %v", m1, m2, want)
			}
			return nil
		}},
		{EasyNAT, func(h *Host, local, m1, m2 netip.AddrPort) error {
			// Endpoint-independent, and the port is kept.
			if want := netip.AddrPortFrom(h.PublicIP(), local.Port()); m1 != want || m2 != want {
				return fmt.Errorf("seen as %v and %v, want %v", m1, m2, want)
			}
			return nil
		}},
		{HardNAT, func(h *Host, local, m1, m2 netip.AddrPort) error {
			// Endpoint-dependent: a new port for the second destination.
			if m1.Addr() != h.PublicIP() || m2.Addr() != h.PublicIP() || m1.Port() == m2.Port() {
				return fmt.Errorf("seen as %v and %v, want %v with two ports", m1, m2, h.PublicIP())
			}
			return nil
		}},
	}
	for _, tt := range tests {
		h := lab.AddHost(tt.kind.String(), tt.kind)
		t.Run(tt.kind.String(), func(t *testing.T) {
			if tt.kind != Public && h.IP() == h.PublicIP() {
				t.Errorf("IP() = PublicIP() = %v behind a NAT", h.IP())
			}
			pc, err := h.ListenPacket("udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			m1, err := udpEcho(ctx, pc, netip.AddrPortFrom(srv.IP(), reflectorPort), []byte("a"))
			if err != nil {
				t.Fatal(err)
			}
			m2, err := udpEcho(ctx, pc, netip.AddrPortFrom(srv.IP(), reflectorPort+1), []byte("b"))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.check(h, local, m1, m2); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestHolePunch runs two peer processes that learn their mapped addresses
// from a reflector and then send to each other's, as Tailscale does.
func TestHolePunch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		a, b  RouterKind
		works bool
	}{
		{"public-public", Public, Public, true},
		{"public-easy", Public, EasyNAT, true},
		{"public-hard", Public, HardNAT, true},
		{"easy-easy", EasyNAT, EasyNAT, true},
		{"easy-hard", EasyNAT, HardNAT, false},
		{"hard-hard", HardNAT, HardNAT, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			lab := New(t)
			srv := lab.AddHost("reflector", Public)
			startReflector(t, srv)
			env := []string{
				"NATLAB_REFLECTOR=" + netip.AddrPortFrom(srv.IP(), reflectorPort).String(),
				"NATLAB_PORT=" + strconv.Itoa(punchPort),
			}
			a := startHelper(ctx, t, lab.AddHost("a", tt.a), "punch", env...)
			b := startHelper(ctx, t, lab.AddHost("b", tt.b), "punch", env...)
			ma, err := a.expect(ctx, "mapped")
			if err != nil {
				t.Fatalf("a: %v", err)
			}
			mb, err := b.expect(ctx, "mapped")
			if err != nil {
				t.Fatalf("b: %v", err)
			}
			a.send("peer " + mb)
			b.send("peer " + ma)

			wait := ctx
			if !tt.works {
				var cancel context.CancelFunc
				wait, cancel = refutable(ctx)
				defer cancel()
			}
			_, errA := a.expect(wait, "ok")
			_, errB := b.expect(wait, "ok")
			switch {
			case tt.works && (errA != nil || errB != nil):
				t.Errorf("hole punching between %v (%s) and %v (%s) failed: a: %v; b: %v", tt.a, ma, tt.b, mb, errA, errB)
			case !tt.works && (errA == nil || errB == nil):
				t.Errorf("hole punching between %v (%s) and %v (%s) worked; a: %v; b: %v", tt.a, ma, tt.b, mb, errA, errB)
			}
		})
	}
}

// TestUDPBlocked checks that a UDP-blocked host cannot reach a reflector,
// while TCP gets through.
func TestUDPBlocked(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	startReflector(t, srv)
	startTCPEcho(t, srv, 8080)
	h := lab.AddHost("blocked", UDPBlocked)

	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	wait, cancel := refutable(ctx)
	defer cancel()
	if seen, err := udpEcho(wait, pc, netip.AddrPortFrom(srv.IP(), reflectorPort), []byte("x")); err == nil {
		t.Errorf("UDP-blocked host reached the reflector, seen as %v", seen)
	}
	if err := tcpEchoCheck(ctx, h, netip.AddrPortFrom(srv.IP(), 8080), 64<<10); err != nil {
		t.Errorf("TCP from UDP-blocked host: %v", err)
	}
	// Unblocking at run time does not lift the kind's block.
	if err := h.BlockUDP(false); err != nil {
		t.Fatal(err)
	}
	wait, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := udpEcho(wait, pc, netip.AddrPortFrom(srv.IP(), reflectorPort), []byte("y")); err == nil {
		t.Error("BlockUDP(false) opened a UDPBlocked router")
	}
}

// TestTCP checks TCP through every kind of router, and that NATs refuse
// unsolicited connections from the internet.
func TestTCP(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	// The server is a separate process, as the real server will be.
	echo := startHelper(ctx, t, srv, "tcpecho", "NATLAB_ADDR=:8080")
	if _, err := echo.expect(ctx, "listening"); err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(srv.IP(), 8080)
	for _, kind := range []RouterKind{Public, EasyNAT, HardNAT, UDPBlocked} {
		h := lab.AddHost(kind.String(), kind)
		t.Run(kind.String(), func(t *testing.T) {
			if err := tcpEchoCheck(ctx, h, dst, 1<<20); err != nil {
				t.Errorf("TCP to public server: %v", err)
			}
			if kind == Public {
				return
			}
			startTCPEcho(t, h, 9000)
			for _, addr := range []netip.Addr{h.PublicIP(), h.IP()} {
				dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				c, err := srv.DialContext(dctx, "tcp4", netip.AddrPortFrom(addr, 9000).String())
				cancel()
				if err == nil {
					c.Close()
					t.Errorf("internet reached %v:9000 behind a NAT", addr)
				}
			}
		})
	}
}

// TestLAN checks that two hosts on one LAN talk directly, and share their
// router's public address.
func TestLAN(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	a := lab.AddHost("a", EasyNAT)
	b := lab.AddLANHost("b", a)
	if b.PublicIP() != a.PublicIP() || b.IP() == a.IP() {
		t.Fatalf("a: %v via %v, b: %v via %v", a.IP(), a.PublicIP(), b.IP(), b.PublicIP())
	}
	ln, err := a.Listen("tcp4", a.IP().String()+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := b.DialContext(ctx, "tcp4", netip.AddrPortFrom(a.IP(), 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if got := sc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != b.IP() {
		t.Errorf("a sees b's connection from %v, want %v", got, b.IP())
	}
}

// lostRoundTrips sends n numbered datagrams one at a time to the reflector
// and counts those whose answer did not come back within timeout.
func lostRoundTrips(ctx context.Context, pc net.PacketConn, dst netip.AddrPort, n int, timeout time.Duration) (int, error) {
	lost := 0
	buf := make([]byte, 256)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return lost, err
		}
		payload := []byte(strconv.Itoa(i))
		if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(dst)); err != nil {
			return lost, err
		}
		pc.SetReadDeadline(time.Now().Add(timeout))
		for {
			m, _, err := pc.ReadFrom(buf)
			if err != nil {
				lost++
				break
			}
			// Skip late answers to earlier datagrams.
			if _, data, _ := bytes.Cut(buf[:m], []byte("|")); bytes.Equal(data, payload) {
				break
			}
		}
	}
	return lost, nil
}

// TestLoss checks that WithLoss(5) loses about 0.5% per crossing of the
// router, and that SetLoss(0) stops it.
func TestLoss(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	startReflector(t, srv)
	h := lab.AddHost("lossy", EasyNAT, WithLoss(5))
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dst := netip.AddrPortFrom(srv.IP(), reflectorPort)

	// A round trip crosses the router twice: about 1% lost, so about 30 of
	// 3000. The bounds are more than four standard deviations away.
	const n = 3000
	lost, err := lostRoundTrips(ctx, pc, dst, n, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lost %d of %d round trips at 5‰ per crossing", lost, n)
	if lost < 8 || lost > 75 {
		t.Errorf("lost %d of %d round trips, want about 30", lost, n)
	}

	if err := h.SetLoss(0); err != nil {
		t.Fatal(err)
	}
	lost, err = lostRoundTrips(ctx, pc, dst, 300, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if lost != 0 {
		t.Errorf("lost %d of 300 round trips after SetLoss(0)", lost)
	}
}

// TestBlockUDP blocks and unblocks UDP on an established flow while TCP
// keeps working.
func TestBlockUDP(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	startReflector(t, srv)
	startTCPEcho(t, srv, 8080)
	for _, kind := range []RouterKind{Public, EasyNAT, HardNAT} {
		h := lab.AddHost(kind.String(), kind)
		t.Run(kind.String(), func(t *testing.T) {
			pc, err := h.ListenPacket("udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			refl := netip.AddrPortFrom(srv.IP(), reflectorPort)
			before, err := udpEcho(ctx, pc, refl, []byte("before"))
			if err != nil {
				t.Fatalf("before blocking: %v", err)
			}

			if err := h.BlockUDP(true); err != nil {
				t.Fatal(err)
			}
			wait, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if _, err := udpEcho(wait, pc, refl, []byte("blocked")); err == nil {
				t.Error("UDP got through while blocked")
			}
			if err := tcpEchoCheck(ctx, h, netip.AddrPortFrom(srv.IP(), 8080), 64<<10); err != nil {
				t.Errorf("TCP while UDP is blocked: %v", err)
			}

			if err := h.BlockUDP(false); err != nil {
				t.Fatal(err)
			}
			after, err := udpEcho(ctx, pc, refl, []byte("after"))
			if err != nil {
				t.Fatalf("after unblocking: %v", err)
			}
			// The flow, and so its NAT mapping, survived the block.
			if after != before {
				t.Errorf("mapped to %v before blocking and %v after", before, after)
			}
		})
	}
}

// TestMTU checks that WithMTU limits the path: a datagram that does not
// fit with DF set never arrives, one that fits does, and TCP finds the path
// MTU through the routers' ICMP.
func TestMTU(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	lab := New(t)
	srv := lab.AddHost("srv", Public)
	startReflector(t, srv)
	startTCPEcho(t, srv, 8080)
	for _, kind := range []RouterKind{Public, EasyNAT} {
		h := lab.AddHost(kind.String(), kind, WithMTU(1280))
		t.Run(kind.String(), func(t *testing.T) {
			pc, err := h.ListenPacket("udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			rc, err := pc.(*net.UDPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var sockErr error
			err = rc.Control(func(fd uintptr) {
				sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
			})
			if err = errors.Join(err, sockErr); err != nil {
				t.Fatal(err)
			}
			refl := netip.AddrPortFrom(srv.IP(), reflectorPort)
			if _, err := udpEcho(ctx, pc, refl, bytes.Repeat([]byte("s"), 1200)); err != nil {
				t.Errorf("1200-byte datagram over MTU 1280: %v", err)
			}
			wait, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if _, err := udpEcho(wait, pc, refl, bytes.Repeat([]byte("b"), 1400)); err == nil {
				t.Error("1400-byte datagram with DF crossed MTU 1280")
			}
			if err := tcpEchoCheck(ctx, h, netip.AddrPortFrom(srv.IP(), 8080), 1<<20); err != nil {
				t.Errorf("TCP over MTU 1280: %v", err)
			}
		})
	}
}

// requireLab skips or fails the test as New does, for tests that need the
// tools before they build a lab.
func requireLab(t *testing.T) {
	t.Helper()
	if err := canHostLab(); err != nil {
		unavailable(t, err)
	}
}

// labNamespaces lists the namespaces whose names start with prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var nss []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			nss = append(nss, e.Name())
		}
	}
	return nss
}

func rootLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	slices.Sort(names)
	return names
}

// TestCleanup checks that a lab leaves nothing behind: no namespace, no
// interface in the machine's namespace, no process. It is not parallel, so
// that no other lab changes the machine meanwhile.
func TestCleanup(t *testing.T) {
	requireLab(t)
	linksBefore := rootLinks(t)
	var prefix string
	var sleeper *exec.Cmd
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		prefix = lab.prefix
		a := lab.AddHost("a", EasyNAT)
		lab.AddLANHost("a2", a)
		lab.AddHost("b", HardNAT)
		lab.AddHost("c", Public)
		if got := labNamespaces(t, prefix); len(got) != 7 {
			t.Errorf("namespaces %v, want 7: the internet, 2 routers, 4 hosts", got)
		}
		if links := rootLinks(t); !slices.Equal(links, linksBefore) {
			t.Errorf("the lab created interfaces in the machine's namespace: %v, was %v", links, linksBefore)
		}
		// A process the test forgot to stop must not keep the lab alive.
		sleeper = a.Command(context.Background(), "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
	})
	if prefix == "" {
		t.Fatal("no lab was built")
	}
	if got := labNamespaces(t, prefix); len(got) != 0 {
		t.Errorf("namespaces left after cleanup: %v", got)
	}
	if links := rootLinks(t); !slices.Equal(links, linksBefore) {
		t.Errorf("interfaces after cleanup: %v, before: %v", links, linksBefore)
	}
	if sleeper != nil {
		err := sleeper.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("process left in the lab ended with %v, want killed by cleanup", err)
		}
	}
}

// TestStale checks that New removes namespaces of dead test processes,
// killing what runs in them, and leaves those of live ones alone.
func TestStale(t *testing.T) {
	ctx := testContext(t)
	requireLab(t)
	// pid_max itself is never a pid.
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	dead := namePrefix + strings.TrimSpace(string(b)) + "-0dead0-inet"
	live := namePrefix + strconv.Itoa(os.Getpid()) + "-0a11e0-inet"
	for _, ns := range []string{dead, live} {
		if _, err := run(nil, "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeNamespaces([]string{ns}) })
		if err := ipBatch(ns, "link add name x0 type veth peer name x1"); err != nil {
			t.Fatal(err)
		}
	}
	orphan := exec.CommandContext(ctx, "ip", "netns", "exec", dead, "sleep", "60")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	// ip netns exec enters the namespace after it starts: wait for that, or
	// New may look before the process is there.
	for {
		out, _ := run(nil, "ip", "netns", "pids", dead)
		if strings.TrimSpace(out) != "" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the process never entered the stale namespace")
		case <-time.After(10 * time.Millisecond):
		}
	}

	New(t)
	if got := labNamespaces(t, dead); len(got) != 0 {
		t.Errorf("stale namespace %s survived New", dead)
	}
	if got := labNamespaces(t, live); len(got) != 1 {
		t.Errorf("New removed %s, which belongs to a live process", live)
	}
	if err := orphan.Wait(); err == nil || ctx.Err() != nil {
		t.Errorf("process in the stale namespace: %v, want killed by New", err)
	}
}

// TestIsolation checks the address rules: every route in every namespace
// of a lab stays inside the lab's ranges, and the internet has no default
// route, so nothing can leak to the machine's real network.
func TestIsolation(t *testing.T) {
	t.Parallel()
	lab := New(t)
	a := lab.AddHost("a", EasyNAT)
	lab.AddLANHost("a2", a)
	lab.AddHost("b", HardNAT)
	lab.AddHost("c", UDPBlocked)
	lab.AddHost("d", Public)
	allowed := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("10.0.0.0/16")}
	inside := func(a netip.Addr) bool {
		return slices.ContainsFunc(allowed, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	nss := labNamespaces(t, lab.prefix)
	if len(nss) != 9 {
		t.Errorf("namespaces %v, want 9: the internet, 3 routers, 5 hosts", nss)
	}
	for _, ns := range nss {
		out, err := run(nil, "ip", "-n", ns, "-4", "route", "show")
		if err != nil {
			t.Fatal(err)
		}
		for _, route := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(route)
			if len(f) == 0 {
				continue
			}
			if f[0] == "default" {
				if ns == lab.inet {
					t.Errorf("%s: the internet has a default route: %s", ns, route)
				}
			} else if p, err := netip.ParsePrefix(f[0]); err != nil || !inside(p.Addr()) {
				t.Errorf("%s: route outside the lab: %s", ns, route)
			}
			if i := slices.Index(f, "via"); i >= 0 && i+1 < len(f) {
				if gw, err := netip.ParseAddr(f[i+1]); err != nil || !inside(gw) {
					t.Errorf("%s: gateway outside the lab: %s", ns, route)
				}
			}
		}
	}
}
