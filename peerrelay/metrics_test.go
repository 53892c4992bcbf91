package peerrelay

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/net/udprelay"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/views"
	"tailscale.com/util/usermetric"

	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

func TestCollectorCountsSessions(t *testing.T) {
	port, err := freeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	var um usermetric.Registry
	srv, err := udprelay.NewServer(logger.Discard, port, true, &um, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetStaticAddrPorts(views.SliceOf([]netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister((&Relay{srv: srv}).Collector())

	sessions := func() float64 {
		v, _, err := metricstest.Value(reg, "tether_udp_relay_sessions")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if n := sessions(); n != 0 {
		t.Errorf("sessions before any allocation: %v, want 0", n)
	}
	if _, err := srv.AllocateEndpoint(key.NewDisco().Public(), key.NewDisco().Public()); err != nil {
		t.Fatal(err)
	}
	if n := sessions(); n != 1 {
		t.Errorf("sessions after one allocation: %v, want 1", n)
	}
}
