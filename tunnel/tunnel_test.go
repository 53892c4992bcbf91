package tunnel

import (
	"net/netip"
	"testing"
	"time"
)

// TestTCPEcho checks TCP both ways, and that the first dial after a cold
// start does not hit WireGuard's 5 s handshake retry.
func TestTCPEcho(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	start := time.Now()
	a, b := pair(t, dm, Options{}, Options{})
	ctx := testContext(t)

	for _, tc := range []struct {
		name          string
		server, dialr *Conn
	}{
		{"a to b", b, a},
		{"b to a", a, b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := tc.server.Listen("tcp", 8080)
			if err != nil {
				t.Fatal(err)
			}
			serveEcho(t, ln)
			conn, err := tc.dialr.DialContext(ctx, "tcp", netip.AddrPortFrom(tc.server.Addr(), 8080))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := echoOnce(conn, "hello "+tc.name, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			t.Logf("first echo %v after start", time.Since(start))
		})
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("start to two echoes took %v; want well under WireGuard's 5 s retry", d)
	}
}
