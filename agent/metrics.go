package agent

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// The agent's metrics (`tether agent --prometheus-address`): its tunnel's
// peers and their paths, read from the tunnel when scraped, and the
// sessions its services serve, counted as they open and close.

// Session kinds, the values of the kind label.
const (
	sessionSSH        = "ssh"        // tether ssh, OpenSSH through --stdio, VS Code…
	sessionPTY        = "pty"        // the web terminal, relayed by the server
	sessionPTYDirect  = "pty_direct" // a web terminal's direct path: its signalling, and the channel while it lives
	sessionSpeedtest  = "speedtest"  // tether speedtest
	sessionForwardTCP = "forward_tcp"
	sessionForwardUDP = "forward_udp"
)

var sessionKinds = []string{sessionSSH, sessionPTY, sessionPTYDirect, sessionSpeedtest, sessionForwardTCP, sessionForwardUDP}

// sessionCount is one kind's open and total sessions.
type sessionCount struct {
	open  atomic.Int64
	total atomic.Uint64
}

// sessionStats counts sessions by kind; the map is fixed at construction.
type sessionStats map[string]*sessionCount

func newSessionStats() sessionStats {
	s := sessionStats{}
	for _, k := range sessionKinds {
		s[k] = &sessionCount{}
	}
	return s
}

// start counts a session of kind as open; the returned function, called
// once or more, counts it closed.
func (s sessionStats) start(kind string) (end func()) {
	c := s[kind]
	c.open.Add(1)
	c.total.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.open.Add(-1) }) }
}

// countingListener counts the connections it accepts as sessions of kind
// until they close.
type countingListener struct {
	net.Listener
	kind  string
	stats sessionStats
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, end: l.stats.start(l.kind)}, nil
}

type countedConn struct {
	net.Conn
	end func()
}

func (c *countedConn) Close() error {
	c.end()
	return c.Conn.Close()
}

var (
	agentPeersDesc = prometheus.NewDesc("tether_agent_peers",
		`Peers (CLIs, the server's web terminal and apps) with an active tunnel to this agent, by path: "direct" or "derp".`,
		[]string{"path"}, nil)
	agentPeerPathDesc = prometheus.NewDesc("tether_agent_peer_path",
		"1 for each peer with an active tunnel, labelled with its path (direct or derp).",
		[]string{"peer", "path"}, nil)
	agentPeerRxDesc = prometheus.NewDesc("tether_agent_peer_received_bytes_total",
		"Bytes received from each peer of the tunnel.", []string{"peer"}, nil)
	agentPeerTxDesc = prometheus.NewDesc("tether_agent_peer_sent_bytes_total",
		"Bytes sent to each peer of the tunnel.", []string{"peer"}, nil)
	agentDERPDesc = prometheus.NewDesc("tether_agent_derp_connections",
		"Connections the agent holds to relays (its home region's, and others' while it sends through them).", nil, nil)
	agentSessionsDesc = prometheus.NewDesc("tether_agent_sessions",
		"Sessions open now, by kind: ssh, pty (web terminal), speedtest, forward_tcp, forward_udp.", []string{"kind"}, nil)
	agentSessionsTotalDesc = prometheus.NewDesc("tether_agent_sessions_total",
		"Sessions opened, by kind.", []string{"kind"}, nil)
)

// statusTimeout bounds reading the tunnel's status for a scrape.
const statusTimeout = 5 * time.Second

// Collector returns the agent's metrics, read when scraped. Before Run has
// started the tunnel, and after it ends, there are no peers.
func (a *Agent) Collector() prometheus.Collector { return agentCollector{a} }

type agentCollector struct{ a *Agent }

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentPeersDesc, agentPeerPathDesc, agentPeerRxDesc, agentPeerTxDesc, agentDERPDesc, agentSessionsDesc, agentSessionsTotalDesc} {
		ch <- d
	}
}

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	for _, k := range sessionKinds {
		s := c.a.sessions[k]
		ch <- prometheus.MustNewConstMetric(agentSessionsDesc, prometheus.GaugeValue, float64(s.open.Load()), k)
		ch <- prometheus.MustNewConstMetric(agentSessionsTotalDesc, prometheus.CounterValue, float64(s.total.Load()), k)
	}
	byPath := map[string]int{tether.PathDirect: 0, tether.PathRelay: 0, tether.PathDERP: 0}
	derpConns := 0
	if conn := c.a.tunnel(); conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		st := conn.Status(ctx)
		cancel()
		derpConns = st.DERPConns
		now := time.Now()
		for _, p := range st.Peers {
			if !peerActive(p, now) {
				continue
			}
			// A peer's path as tunnel.PeerStatus tells it.
			path := tether.PathDERP
			switch {
			case p.Direct:
				path = tether.PathDirect
			case p.UDPRelay:
				path = tether.PathRelay
			}
			byPath[path]++
			id := p.ID.String()
			ch <- prometheus.MustNewConstMetric(agentPeerPathDesc, prometheus.GaugeValue, 1, id, path)
			ch <- prometheus.MustNewConstMetric(agentPeerRxDesc, prometheus.CounterValue, float64(p.RxBytes), id)
			ch <- prometheus.MustNewConstMetric(agentPeerTxDesc, prometheus.CounterValue, float64(p.TxBytes), id)
		}
	}
	for path, n := range byPath {
		ch <- prometheus.MustNewConstMetric(agentPeersDesc, prometheus.GaugeValue, float64(n), path)
	}
	ch <- prometheus.MustNewConstMetric(agentDERPDesc, prometheus.GaugeValue, float64(derpConns))
}

// peerActive reports whether p's tunnel counts as up: a WireGuard
// handshake within activeWithin, as for the reports to the server.
func peerActive(p tunnel.PeerStatus, now time.Time) bool {
	return !p.LastHandshake.IsZero() && now.Sub(p.LastHandshake) <= activeWithin
}
