// Package metrics is what every Tether process (the server, a workspace
// proxy, an agent) needs to be observed by operators: a Prometheus registry
// of its own with the standard Go and process collectors, the HTTP
// listeners for --prometheus-address and --pprof-address, and the HTTP
// request metrics that servers put in front of their routing tables.
//
// There is no global registry: a command makes one with NewRegistry and
// passes it (or the collectors of its parts) along. Parts that already
// count something (the coordinator, the relay, the store) expose a
// prometheus.Collector that reads their own counters when scraped, so that
// nothing is counted twice and nothing costs anything while nobody
// scrapes.
//
// Metric names follow Prometheus' conventions: the tether_ prefix, base
// units (_seconds, _bytes), _total for counters. The README's "Metrics"
// section lists them; keep it in step.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Tether metric.
const Namespace = "tether"

// NewRegistry returns a registry with the Go runtime's and the process's
// standard collectors, and tether_build_info carrying version.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   Namespace,
			Name:        "build_info",
			Help:        "Always 1; the version label is the running build's.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// Handler serves the registry's metrics in Prometheus' text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A collector that fails (a closed store, say) costs its own
		// series, not the whole scrape.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}
