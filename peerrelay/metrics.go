package peerrelay

import "github.com/prometheus/client_golang/prometheus"

var sessionsDesc = prometheus.NewDesc("tether_udp_relay_sessions",
	"Endpoints the server's UDP relay holds, one per pair of peers it relays for (bound or waiting for both to bind).", nil, nil)

// Collector reports the relay's sessions when Prometheus scrapes, read
// from the library's server: nothing is counted twice.
func (r *Relay) Collector() prometheus.Collector { return collector{r} }

type collector struct{ r *Relay }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- sessionsDesc }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	n := len(c.r.srv.GetSessions())
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(n))
}
