package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// TestLabLossy connects two easy NATs whose routers each drop 0.5% of
// packets at random: the path still goes direct and data moves, through
// ssh and through a long-lived forwarded TCP session. When the loss takes
// the first hole punch, the pair may sit on the UDP relay until magicsock
// tries direct again, a minute later (seen once in about ten CI runs).
func TestLabLossy(t *testing.T) {
	lab, serverH := newLab(t, false)
	srv := startLabServer(t, serverH, nil)
	agentH := lab.AddHost("agent", natlab.EasyNAT, natlab.WithLoss(5))
	clientH := lab.AddHost("client", natlab.EasyNAT, natlab.WithLoss(5))
	ws := startLabWorkspace(t, lab, srv, agentH, clientH)

	took, pongs := timeToDirect(t, ws.User, directPongs, directAfterRelayTimeout)
	t.Logf("FIGURE lossy: direct %s after the first pong (%d pongs)", took.Round(time.Millisecond), len(pongs))
	if took > time.Second {
		t.Logf("the pongs, in order: %+v", pongs)
	}
	checkTransfer(t, ws.User, 4<<20)

	s := forwardStream(t, ws)
	s.waitFlowing(t, 4<<20, flowTimeout, "a forwarded session over lossy links")
	if err := s.err(); err != nil {
		t.Fatalf("the session broke: %v", err)
	}
}

// TestLabSmallMTU puts the client behind an uplink with an MTU of 1280, the
// IPv6 minimum, which WireGuard's packets exceed once encapsulated (1280 +
// 60 bytes): routers must fragment them. Bulk TCP and the largest datagram
// the tunnel carries (1232 bytes of payload in a 1280-byte IPv6 packet) must
// still pass, directly.
//
// With UDP GSO (the library's default on Linux) this used to stall: once an
// ICMP "fragmentation needed" from the bottleneck lowered the sender's path
// MTU below the size of its packets, the kernel refused every GSO batch
// (EMSGSIZE; EINVAL before Linux 6.14), and tailscale.com v1.102.5's
// batching conn retries without GSO only on EIO. The tunnel now sends IPv4
// without the don't-fragment bit (tunnel/pmtu_linux.go); both cases, with
// and without GSO, must pass.
func TestLabSmallMTU(t *testing.T) {
	tests := []struct {
		name string
		env  []string
	}{
		{"UDP GSO", nil},
		{"no UDP GSO", []string{"TS_DEBUG_DISABLE_UDP_GSO=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testSmallMTU(t, tt.env)
		})
	}
}

func testSmallMTU(t *testing.T, env []string) {
	lab, serverH := newLab(t, false)
	srv := startLabServer(t, serverH, nil)
	agentH := lab.AddHost("agent", natlab.EasyNAT)
	clientH := lab.AddHost("client", natlab.EasyNAT, natlab.WithMTU(1280))
	ws := startLabWorkspace(t, lab, srv, agentH, clientH, env...)
	probe := newPathProbe(t, clientH, serverH.IP())

	startForward(t, ws, true)
	// Bring the forward's own tunnel onto the direct path first.
	s := startStream(t, dialForward(t, ws, "tcp4", labForwardTCP))
	probe.waitPath("direct", pathMin, directTimeout)
	s.close()

	const size = 16 << 20
	direct0, _ := probe.bytes()
	c := dialForward(t, ws, "tcp4", labForwardTCP)
	defer c.Close()
	c.SetDeadline(time.Now().Add(harness.CommandTimeout))
	data := make([]byte, size)
	rand.Read(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data) // full-size segments
		werr <- err
	}()
	back := make([]byte, size)
	start := time.Now()
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatalf("bulk transfer: %v", err)
	}
	elapsed := time.Since(start)
	if err := <-werr; err != nil {
		t.Fatalf("bulk transfer: write: %v", err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("bulk transfer: the echoed bytes differ")
	}
	direct1, _ := probe.bytes()
	if got := direct1 - direct0; got < size {
		t.Errorf("only %d of the %d echoed bytes came directly", got, size)
	}
	t.Logf("FIGURE MTU 1280 %v: %d MB echoed directly in %s", env, size>>20, elapsed.Round(time.Millisecond))

	u := dialForward(t, ws, "udp4", labForwardUDP)
	defer u.Close()
	dgram := make([]byte, 1232)
	rand.Read(dgram)
	buf := make([]byte, 2048)
	var n int
	harness.WaitFor(t, harness.StatusTimeout, "a 1232-byte datagram to come back", func() bool {
		u.Write(dgram)
		u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var err error
		n, err = u.Read(buf)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("UDP forward: %v", err)
		}
		return err == nil
	})
	if !bytes.Equal(buf[:n], dgram) {
		t.Errorf("the 1232-byte datagram came back as %d different bytes", n)
	}
}
