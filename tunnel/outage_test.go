package tunnel

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/net/packet"
	"tailscale.com/net/tstun"
	"tailscale.com/wgengine/filter"
)

// Outages of the path under a live TCP connection, as when a direct path
// dies and magicsock has not yet moved to another: every WireGuard packet
// is dropped, both ways, for outageLength.
const (
	outageCycles = 15
	outageLength = time.Second
	// outageRecovery bounds the wait for data to flow again after an
	// outage ends. Without a hang, TCP's next retransmission is due at
	// most about one outage later (its timer doubles from a few
	// milliseconds); with RACK on, a hang lasted 8 s to over a minute.
	outageRecovery = 8 * time.Second
)

// TestEchoResumesAfterOutages holds an echo stream open through a tunnel
// while its path goes dark again and again, and checks that data flows
// again soon after each outage. This is the hang RACK brought (see
// tuneTCP): after a lost tail loss probe netstack could leave a sender
// with no retransmission timer, and a download stopped until the other
// side happened to send something; with RACK on, 6 of 30 outages here
// stalled for more than 8 s, none with it off.
func TestEchoResumesAfterOutages(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a := newConn(t, "a", Options{DERPMap: dm})
	b := newConn(t, "b", Options{DERPMap: dm})
	var dark atomic.Bool
	for _, c := range []*Conn{a, b} {
		// Set before the peers meet, so before any packet reads it.
		c.tundev.PreFilterPacketInboundFromWireGuard = func(*packet.Parsed, *tstun.Wrapper) filter.Response {
			if dark.Load() {
				return filter.DropSilently
			}
			return filter.Accept
		}
	}
	introduce(t, a, b)
	s := startEchoStream(t, dialEcho(t, testContext(t), a, b, 8080))

	if !s.waitMore(1<<20, outageRecovery) {
		t.Fatal("the stream never flowed")
	}
	for i := range outageCycles {
		dark.Store(true)
		time.Sleep(outageLength)
		dark.Store(false)
		ended := time.Now()
		if !s.waitMore(256<<10, outageRecovery) {
			t.Fatalf("outage %d: no data for %s after it ended", i+1, outageRecovery)
		}
		t.Logf("outage %d: flowing again %s after it ended", i+1, time.Since(ended).Round(time.Millisecond))
	}
}

// echoStream writes to an echo connection, keeping at most a few chunks
// ahead of what came back, so that a stalled path shows as a stall rather
// than filling buffers.
type echoStream struct {
	echoed atomic.Int64
}

func startEchoStream(t *testing.T, conn net.Conn) *echoStream {
	s := &echoStream{}
	const chunk = 32 << 10
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		conn.Close()
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, chunk)
		for {
			n, err := conn.Read(buf)
			s.echoed.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, chunk)
		var sent int64
		for {
			for sent-s.echoed.Load() > 8*chunk {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
			if _, err := conn.Write(buf); err != nil {
				return
			}
			sent += chunk
		}
	}()
	return s
}

// waitMore waits until n more bytes have come back, or d has passed.
func (s *echoStream) waitMore(n int64, d time.Duration) bool {
	target := s.echoed.Load() + n
	deadline := time.Now().Add(d)
	for s.echoed.Load() < target {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
