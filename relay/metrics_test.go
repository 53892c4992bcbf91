package relay_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether/internal/metrics/metricstest"
	"github.com/tetherdev/tether/internal/testwait"
	"github.com/tetherdev/tether/relay"
)

// TestMetrics: the relay's metrics bridge the library's counters: they
// move as clients connect and packets pass, and drops show by reason.
func TestMetrics(t *testing.T) {
	ctx := testContext(t)
	k1, k2 := key.NewNode(), key.NewNode()
	r := startRelay(t, relay.Options{Keys: newFakeKeys(k1.Public(), k2.Public())})
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.derp.Collector())
	value := func(name string, labels ...string) float64 {
		t.Helper()
		v, ok, err := metricstest.Value(reg, name, labels...)
		if err != nil || !ok {
			t.Fatalf("%s%v: present %v, %v", name, labels, ok, err)
		}
		return v
	}
	dropsBefore := value("tether_derp_dropped_packets_total", "reason", "unknown_dest")
	// The relay's warden holds a connection of its own, maybe not yet.
	connsBefore := value("tether_derp_connections")

	a, b := dialDERP(t, ctx, r, k1, key.DERPMesh{}), dialDERP(t, ctx, r, k2, key.DERPMesh{})
	if !admitted(t, a) || !admitted(t, b) {
		t.Fatal("a known client was refused")
	}
	if !relays(t, ctx, a, b) {
		t.Fatal("no packet between two known peers")
	}
	waitFor(t, ctx, "two more connections counted", func() bool { return value("tether_derp_connections") >= connsBefore+2 })
	for _, name := range []string{"tether_derp_accepts_total", "tether_derp_received_packets_total", "tether_derp_sent_packets_total"} {
		if v := value(name); v < 1 {
			t.Errorf("%s = %v, want it moved", name, v)
		}
	}
	if v := value("tether_derp_received_bytes_total"); v < float64(len("hello")) {
		t.Errorf("tether_derp_received_bytes_total = %v, want at least one packet's", v)
	}

	// A packet for a peer that is not connected is dropped.
	a.send(key.NewNode().Public(), []byte("nobody"))
	waitFor(t, ctx, "the drop counted", func() bool {
		return value("tether_derp_dropped_packets_total", "reason", "unknown_dest") > dropsBefore
	})
}

// waitFor polls cond until it holds, or fails the test once ctx ends.
var waitFor = testwait.Until
