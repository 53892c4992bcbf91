package servercmd

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/metrics"
)

// ops is what the server offers its operators beside the access URL: the
// Prometheus metrics (--prometheus-address) and the Go profiler
// (--pprof-address), each on a listener of its own and off by default.
type ops struct {
	registry   *prometheus.Registry // nil without --prometheus-address
	prometheus *metrics.Listener
	pprof      *metrics.Listener
}

// startOps starts the listeners s asks for. The registry is filled as the
// server's parts are built: the store (storemetrics), the infrastructure
// (register), the API server (server.Options.Metrics).
func startOps(s Settings, version string, logger *slog.Logger) (_ *ops, err error) {
	o := &ops{}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if s.PprofAddress != "" {
		if o.pprof, err = metrics.ListenPprof(s.PprofAddress, logger); err != nil {
			return nil, err
		}
	}
	if s.PrometheusAddress != "" {
		o.registry = metrics.NewRegistry(version)
		if o.prometheus, err = metrics.ListenPrometheus(s.PrometheusAddress, o.registry, logger); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// register adds the infrastructure's collectors: the coordinator's, the
// built-in relay's and the UDP relay's.
func (o *ops) register(inf *infra) {
	if o.registry == nil {
		return
	}
	o.registry.MustRegister(inf.coord.Collector())
	if inf.derp != nil {
		o.registry.MustRegister(inf.derp.Collector())
	}
	if inf.udp != nil {
		o.registry.MustRegister(inf.udp.Collector())
	}
}

func (o *ops) close() {
	if o.prometheus != nil {
		o.prometheus.Close()
	}
	if o.pprof != nil {
		o.pprof.Close()
	}
}
