package coordinator

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the coordinator's counters, kept with atomics so that counting
// costs the hot path (a queue push under the lock) one add.
type stats struct {
	updatesSent  atomic.Uint64 // peer updates handed to a successful Send
	coalesced    atomic.Uint64 // pending updates replaced by a newer one before being sent
	sendTimeouts atomic.Uint64 // peers dropped for not reading within SendTimeout
	invalidNodes atomic.Uint64 // streams ended for an invalid node
}

var (
	peersDesc = prometheus.NewDesc("tether_coordinator_peers",
		`Peers with a coordination stream to this replica, by kind: "agent" or "client" (a CLI, or the server's own tunnel to an agent).`,
		[]string{"kind"}, nil)
	updatesSentDesc = prometheus.NewDesc("tether_coordinator_updates_sent_total",
		"Peer updates (a counterpart's node, or its departure) sent to peers.", nil, nil)
	coalescedDesc = prometheus.NewDesc("tether_coordinator_updates_coalesced_total",
		"Peer updates dropped from a peer's send queue because a newer one about the same counterpart replaced them before they were sent (a slow reader).", nil, nil)
	sendTimeoutsDesc = prometheus.NewDesc("tether_coordinator_send_timeouts_total",
		"Peers whose stream was ended because they did not read an update in time.", nil, nil)
	invalidNodesDesc = prometheus.NewDesc("tether_coordinator_invalid_nodes_total",
		"Streams ended because their peer sent an invalid node.", nil, nil)
	outboxDesc = prometheus.NewDesc("tether_coordinator_outbox_events",
		"Events waiting to be published to the other replicas (0 with a single replica).", nil, nil)
)

// Collector returns the coordinator's metrics, read when scraped. Register
// it with one registry.
func (c *Coordinator) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Coordinator }

func (m collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{peersDesc, updatesSentDesc, coalescedDesc, sendTimeoutsDesc, invalidNodesDesc, outboxDesc} {
		ch <- d
	}
}

func (m collector) Collect(ch chan<- prometheus.Metric) {
	c := m.c
	c.mu.Lock()
	agents, clients := 0, len(c.g.clients)
	for _, a := range c.g.agents {
		if a.conn != nil {
			agents++
		}
	}
	c.mu.Unlock()
	outbox := 0
	if c.out != nil {
		outbox = c.out.len()
	}
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(agents), "agent")
	ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(clients), "client")
	ch <- prometheus.MustNewConstMetric(updatesSentDesc, prometheus.CounterValue, float64(c.stats.updatesSent.Load()))
	ch <- prometheus.MustNewConstMetric(coalescedDesc, prometheus.CounterValue, float64(c.stats.coalesced.Load()))
	ch <- prometheus.MustNewConstMetric(sendTimeoutsDesc, prometheus.CounterValue, float64(c.stats.sendTimeouts.Load()))
	ch <- prometheus.MustNewConstMetric(invalidNodesDesc, prometheus.CounterValue, float64(c.stats.invalidNodes.Load()))
	ch <- prometheus.MustNewConstMetric(outboxDesc, prometheus.GaugeValue, float64(outbox))
}
