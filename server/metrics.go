package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/metrics"
)

// The server's metrics: its HTTP requests by route (the routing table's
// patterns), and what it holds open, read from its own state when
// Prometheus scrapes (collector), so that nothing is counted twice.

// Route labels for what the routing table does not route.
const (
	routeSubdomainApp = "subdomain app"
	routePathApp      = "path app"
	routeUnmatched    = "unmatched" // refused before routing (cross-site), or redirected by the mux
)

// routeLabel names r's route for the request metrics, once it was served.
func (s *Server) routeLabel(r *http.Request) string {
	if _, _, _, ok := s.wildcard.appHost(r.Host); ok {
		return routeSubdomainApp
	}
	switch r.Pattern {
	case "":
		return routeUnmatched
	case "/":
		if _, _, _, _, ok := parseAppPath(r.URL.Path); ok {
			return routePathApp
		}
	}
	return r.Pattern
}

// instrument registers the server's metrics with reg and measures h.
func (s *Server) instrument(reg prometheus.Registerer, h http.Handler) http.Handler {
	if reg == nil {
		return h
	}
	reg.MustRegister(collector{s})
	return metrics.NewHTTP(reg).Wrap(h, s.routeLabel)
}

var (
	agentsDesc = prometheus.NewDesc("tether_agents_connected",
		"Workspace agents connected to this server (replica).", nil, nil)
	sessionsDesc = prometheus.NewDesc("tether_sessions",
		`Long-lived connections users hold through this server: "terminal" (web terminals), "tunnel" (the CLI's coordination, one per ssh, port-forward, ping or speedtest).`,
		[]string{"kind"}, nil)
	appRequestsDesc = prometheus.NewDesc("tether_app_requests_in_flight",
		"Requests (WebSockets included) being proxied to workspace apps now.", nil, nil)
	appRequestsTotalDesc = prometheus.NewDesc("tether_app_requests_total",
		"Requests proxied to workspace apps.", nil, nil)
	terminalsDesc = prometheus.NewDesc("tether_web_terminals",
		`Web terminals this server serves, by path: "relayed" (through this server) or "direct" (browser to agent over WebRTC; the server only holds the WebSocket).`,
		[]string{"path"}, nil)
	terminalBytesDesc = prometheus.NewDesc("tether_web_terminal_relayed_bytes_total",
		`Terminal bytes this server relayed between browsers and agents, by direction: "to_browser" (output) or "to_agent" (input). Direct terminals add nothing.`,
		[]string{"direction"}, nil)
)

// sessionKinds maps liveConn.what to the kind label.
var sessionKinds = map[string]string{"web terminal": "terminal", "tunnel": "tunnel"}

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- agentsDesc
	ch <- sessionsDesc
	ch <- appRequestsDesc
	ch <- appRequestsTotalDesc
	ch <- terminalsDesc
	ch <- terminalBytesDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	agents := len(c.s.agents)
	c.s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(agents))

	counts := map[string]int{}
	c.s.live.mu.Lock()
	for lc := range c.s.live.conns {
		counts[lc.what]++
	}
	c.s.live.mu.Unlock()
	for what, kind := range sessionKinds {
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(counts[what]), kind)
	}
	ch <- prometheus.MustNewConstMetric(appRequestsDesc, prometheus.GaugeValue, float64(c.s.appRequests.Load()))
	ch <- prometheus.MustNewConstMetric(appRequestsTotalDesc, prometheus.CounterValue, float64(c.s.appRequestsTotal.Load()))
	relayed, direct := c.s.terminalPaths.totals()
	ch <- prometheus.MustNewConstMetric(terminalsDesc, prometheus.GaugeValue, float64(relayed), "relayed")
	ch <- prometheus.MustNewConstMetric(terminalsDesc, prometheus.GaugeValue, float64(direct), "direct")
	ch <- prometheus.MustNewConstMetric(terminalBytesDesc, prometheus.CounterValue, float64(c.s.terminalBytesOut.Load()), "to_browser")
	ch <- prometheus.MustNewConstMetric(terminalBytesDesc, prometheus.CounterValue, float64(c.s.terminalBytesIn.Load()), "to_agent")
}
