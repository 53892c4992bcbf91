package coordinator_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, ok, err := metricstest.Value(reg, name, labels...)
	if err != nil || !ok {
		t.Fatalf("%s %v: present %v, %v", name, labels, ok, err)
	}
	return v
}

func TestMetrics(t *testing.T) {
	ctx := testContext(t)
	c := coordinator.New(coordinator.Options{SendTimeout: 100 * time.Millisecond})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collector())

	agentID := uuid.New()
	// The agent does not read yet: its clients' nodes wait in its queue
	// and the newer ones replace the older.
	slow := newPeer(t, agentID, 0)
	go func() { slow.done <- c.ServeAgent(ctx, agentID, slow.s) }()
	cls := []*peer{startClient(t, ctx, c, uuid.New(), agentID), startClient(t, ctx, c, uuid.New(), agentID)}
	waitUntil(t, ctx, "three peers counted", func() bool {
		v, _, _ := metricstest.Value(reg, "tether_coordinator_peers")
		return v == 3
	})
	if v := metricValue(t, reg, "tether_coordinator_peers", "kind", "agent"); v != 1 {
		t.Errorf("agents: %v, want 1", v)
	}
	const rounds = 5
	for r := 1; r <= rounds; r++ {
		for _, cl := range cls {
			cl.sendNode(ctx, newNode(cl.id, r))
		}
	}
	for _, cl := range cls {
		slow.awaitNode(ctx, cl.id, rounds)
	}
	if v := metricValue(t, reg, "tether_coordinator_updates_coalesced_total"); v == 0 {
		t.Errorf("no update counted as coalesced behind a slow reader")
	}
	if v := metricValue(t, reg, "tether_coordinator_updates_sent_total"); v < 2 {
		t.Errorf("updates sent: %v, want at least one per client", v)
	}

	// A client that stops reading is dropped, and counted.
	stuck := newPeer(t, uuid.New(), 0)
	go func() { stuck.done <- c.ServeClient(ctx, stuck.id, agentID, stuck.s) }()
	slow.sendNode(ctx, newNode(agentID, 1))
	stuck.wait(ctx)
	if v := metricValue(t, reg, "tether_coordinator_send_timeouts_total"); v != 1 {
		t.Errorf("send timeouts: %v, want 1", v)
	}
	for _, cl := range cls {
		cl.awaitNode(ctx, agentID, 1)
	}
	slow.awaitKind(ctx, stuck.id, tether.PeerLost)
	if v := metricValue(t, reg, "tether_coordinator_peers", "kind", "client"); v != 2 {
		t.Errorf("clients after one was dropped: %v, want 2", v)
	}
}
