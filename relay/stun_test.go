package relay_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"tailscale.com/net/stun"

	"github.com/tetherdev/tether/relay"
)

// TestSTUNAnswers: each STUN server answers a binding request with the
// address the request came from, and the region's port is the first's.
func TestSTUNAnswers(t *testing.T) {
	s, err := relay.ListenSTUN([]string{"127.0.0.1:0", "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addrs := s.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("listening on %v, want two addresses", addrs)
	}
	if first := addrs[0].(*net.UDPAddr).Port; s.Port() != first {
		t.Errorf("Port() = %d, want the first server's, %d", s.Port(), first)
	}
	for _, addr := range addrs {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		tx := stun.NewTxID()
		if _, err := conn.WriteTo(stun.Request(tx), addr); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(testTimeout))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer from %v: %v", addr, err)
		}
		gotTx, mapped, err := stun.ParseResponse(buf[:n])
		if err != nil {
			t.Fatalf("answer from %v: %v", addr, err)
		}
		if want := conn.LocalAddr().(*net.UDPAddr).AddrPort(); gotTx != tx || mapped != netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
			t.Errorf("%v answered %v for transaction %x, want %v for %x", addr, mapped, gotTx, want, tx)
		}
	}
}

// TestListenSTUNFails: an address that cannot be listened on fails the
// whole start, naming it, and leaves nothing running.
func TestListenSTUNFails(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name    string
		addrs   []string
		wantErr string
	}{
		{"none", nil, "no STUN address"},
		{"in use", []string{"127.0.0.1:0", busy.LocalAddr().String()}, "STUN server on " + busy.LocalAddr().String()},
		{"not an address", []string{"nowhere"}, "STUN server on nowhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := goleak.IgnoreCurrent()
			s, err := relay.ListenSTUN(tt.addrs, nil)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want one with %q", err, tt.wantErr)
			}
			goleak.VerifyNone(t, before)
		})
	}
}

// TestSTUNAnswersWebRTC: the STUN servers answer the plain RFC 5389
// binding requests of WebRTC stacks (a browser's, pion's in the agent),
// which carry no SOFTWARE attribute of Tailscale's, or none at all: their
// server-reflexive candidates are what takes the web terminal direct
// through NATs. Malformed and non-binding messages get no answer.
func TestSTUNAnswersWebRTC(t *testing.T) {
	s, err := relay.ListenSTUN([]string{"127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := s.Addrs()[0]
	header := func(typ uint16, length int, tx stun.TxID) []byte {
		b := []byte{byte(typ >> 8), byte(typ), byte(length >> 8), byte(length), 0x21, 0x12, 0xa4, 0x42}
		return append(b, tx[:]...)
	}
	tests := []struct {
		name   string
		req    func(tx stun.TxID) []byte
		answer bool
	}{
		{"bare binding request", func(tx stun.TxID) []byte { return header(0x0001, 0, tx) }, true},
		{"with another SOFTWARE", func(tx stun.TxID) []byte {
			return append(header(0x0001, 8, tx), 0x80, 0x22, 0, 4, 'p', 'i', 'o', 'n')
		}, true},
		{"tailscale's", func(tx stun.TxID) []byte { return stun.Request(tx) }, true},
		{"length beyond the packet", func(tx stun.TxID) []byte { return header(0x0001, 8, tx) }, false},
		{"binding indication", func(tx stun.TxID) []byte { return header(0x0011, 0, tx) }, false},
		{"binding response", func(tx stun.TxID) []byte { return header(0x0101, 0, tx) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tx := stun.NewTxID()
			if _, err := conn.WriteTo(tt.req(tx), addr); err != nil {
				t.Fatal(err)
			}
			// A request that gets no answer is followed by one that
			// does, so that the test waits for an answer, never a time.
			probe := stun.NewTxID()
			if !tt.answer {
				if _, err := conn.WriteTo(stun.Request(probe), addr); err != nil {
					t.Fatal(err)
				}
			}
			conn.SetReadDeadline(time.Now().Add(testTimeout))
			buf := make([]byte, 1500)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			gotTx, mapped, err := stun.ParseResponse(buf[:n])
			if err != nil {
				t.Fatalf("answer: %v", err)
			}
			want := tx
			if !tt.answer {
				want = probe
			}
			if gotTx != want {
				t.Fatalf("answered transaction %x, want %x (the request %s)", gotTx, want, map[bool]string{true: "answered", false: "ignored"}[tt.answer])
			}
			if local := conn.LocalAddr().(*net.UDPAddr).AddrPort(); mapped != netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) {
				t.Errorf("mapped address %v, want %v", mapped, local)
			}
		})
	}
}
