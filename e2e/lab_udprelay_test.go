package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/natlab"
)

// TestLabUDPRelaySession holds a TCP session through port-forward between
// two hard NATs, which moves to the server's UDP relay; checks that what
// the session carries never appears in the clear at the server; blocks UDP
// on the client's side (DERP carries it on) and unblocks it (back to the
// relay). The session must never break or corrupt a byte.
func TestLabUDPRelaySession(t *testing.T) {
	lab, serverH := newLab(t, false)
	srv := startLabServer(t, serverH, nil)
	agentH, clientH := lab.AddHost("agent", natlab.HardNAT), lab.AddHost("client", natlab.HardNAT)
	ws := startLabWorkspace(t, lab, srv, agentH, clientH)
	probe := newPathProbe(t, clientH, serverH.IP())
	sniff := startSniffer(t, serverH)

	s := forwardStream(t, ws)
	s.waitFlowing(t, 1<<20, flowTimeout, "a new session")
	took := probe.waitPath("relay", pathMin, relayTimeout)
	t.Logf("FIGURE session on the UDP relay %s after its first MB", took.Round(time.Millisecond))

	// A marker through the relayed tunnel, on a second connection of the
	// same port-forward: it must come back intact and never show up in
	// any packet the server's host sees. It must cross the relay: a path
	// may leave it for a moment (magicsock rebinds its socket when a
	// network check's reply outruns its own bookkeeping of the send, then
	// looks for the relay again), so a marker that went another way is
	// sent again once the session is back on the relay.
	b := make([]byte, 16)
	rand.Read(b)
	marker := []byte("tether-marker-" + hex.EncodeToString(b))
	payload := bytes.Repeat(marker, 4096)
	for try := 1; ; try++ {
		probe.waitPath("relay", pathMin, relayTimeout)
		c := dialForward(t, ws, "tcp4", labForwardTCP)
		relayedBefore := sniff.relayed.Load()
		go c.Write(payload)
		got := make([]byte, len(payload))
		c.SetReadDeadline(time.Now().Add(flowTimeout))
		_, err := io.ReadFull(c, got)
		c.Close()
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("the marker did not come back through the tunnel intact: %v", err)
		}
		n := sniff.relayed.Load() - relayedBefore
		if n >= int64(len(payload)) {
			break
		}
		if try == 3 {
			t.Fatalf("the server's UDP relay port saw %d bytes while %d bytes went through the tunnel, %d times: not on the relay", n, len(payload), try)
		}
		t.Logf("the marker went another way than the relay (%d bytes on the relay port); again", n)
	}
	if n := sniff.count(marker); n > 0 {
		t.Fatalf("the marker appeared in the clear in %d packets at the server", n)
	}

	// UDP blocked on the client's side: DERP carries the session on;
	// unblocked: back to the relay.
	udpBlockedAndBack(t, clientH, s, probe, "relay", relayTimeout)
	if err := s.err(); err != nil {
		t.Fatalf("the session broke: %v", err)
	}
	if n := sniff.count(marker); n > 0 {
		t.Fatalf("the marker appeared in the clear in %d packets at the server", n)
	}
}

// sniffer captures every packet on a lab host's interfaces (an AF_PACKET
// socket in its namespace): it keeps those that carry a marker and counts
// the bytes sent to the UDP relay's port.
type sniffer struct {
	fd      int
	relayed atomic.Int64 // UDP payload bytes to labUDPRelayPort
	mu      sync.Mutex
	packets [][]byte // the last few thousand packets
	done    chan struct{}
}

func startSniffer(t *testing.T, h *natlab.Host) *sniffer {
	t.Helper()
	s := &sniffer{done: make(chan struct{})}
	const ethPAll = 0x0003
	proto := int(ethPAll>>8 | (ethPAll&0xff)<<8) // htons
	err := h.Run(func() (err error) {
		s.fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, proto)
		return err
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", h.Name(), err)
	}
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	syscall.SetsockoptTimeval(s.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	stop := make(chan struct{})
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := syscall.Recvfrom(s.fd, buf, 0)
			if err != nil || n < 28 {
				continue
			}
			s.note(buf[:n])
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-s.done
		syscall.Close(s.fd)
	})
	return s
}

// note records one IP packet (SOCK_DGRAM: no link-layer header).
func (s *sniffer) note(p []byte) {
	if p[0]>>4 == 4 && p[9] == syscall.IPPROTO_UDP {
		ihl := int(p[0]&0x0f) * 4
		if len(p) >= ihl+8 && binary.BigEndian.Uint16(p[ihl+2:]) == labUDPRelayPort {
			s.relayed.Add(int64(len(p) - ihl - 8))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packets = append(s.packets, bytes.Clone(p))
	if len(s.packets) > 200000 {
		s.packets = s.packets[len(s.packets)-100000:]
	}
}

// count returns how many captured packets contain marker.
func (s *sniffer) count(marker []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.packets {
		if bytes.Contains(p, marker) {
			n++
		}
	}
	return n
}
