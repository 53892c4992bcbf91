package peerrelay

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"tailscale.com/net/udprelay"
	"tailscale.com/types/logger"
	"tailscale.com/types/views"
	"tailscale.com/util/usermetric"
)

// TestCheck runs the health probe against a real relay server: its own
// address answers the bind; an address where nothing relays does not.
func TestCheck(t *testing.T) {
	port, err := freeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	var metrics usermetric.Registry
	srv, err := udprelay.NewServer(logger.Discard, port, true, &metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	deadPort, err := freeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	good := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), deadPort)
	r := &Relay{srv: srv, addrs: []netip.AddrPort{good, dead}}
	srv.SetStaticAddrPorts(views.SliceOf(r.addrs))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := r.Check(ctx)
	if err := got[good]; err != nil {
		t.Errorf("the relay's own address: %v", err)
	}
	if got[dead] == nil {
		t.Errorf("an address with no relay answered the bind")
	}
}
