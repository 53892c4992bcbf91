package agent

import (
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

// TestSessionMetrics: connections to the agent's services count as open
// sessions until they close, once each, and in the totals for good.
func TestSessionMetrics(t *testing.T) {
	a := newAgent(t, http.NotFoundHandler())
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	value := func(name, kind string) float64 {
		t.Helper()
		v, ok, err := metricstest.Value(reg, name, "kind", kind)
		if err != nil || !ok {
			t.Fatalf("%s{kind=%q}: present %v, %v", name, kind, ok, err)
		}
		return v
	}

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: tl, kind: sessionSSH, stats: a.sessions}
	defer l.Close()
	for range 2 {
		c, err := net.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var served []net.Conn
	for range 2 {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		served = append(served, c)
	}
	if v := value("tether_agent_sessions", sessionSSH); v != 2 {
		t.Errorf("open ssh sessions: %v, want 2", v)
	}
	served[0].Close()
	served[0].Close() // closing twice ends one session
	if v := value("tether_agent_sessions", sessionSSH); v != 1 {
		t.Errorf("open ssh sessions after one closed: %v, want 1", v)
	}
	if v := value("tether_agent_sessions_total", sessionSSH); v != 2 {
		t.Errorf("ssh sessions in total: %v, want 2", v)
	}

	// A forward counts while its handler runs.
	done := make(chan struct{})
	fwd := a.track(sessionForwardTCP, func(net.Conn, netip.AddrPort) {
		if v := value("tether_agent_sessions", sessionForwardTCP); v != 1 {
			t.Errorf("open TCP forwards while one runs: %v, want 1", v)
		}
		close(done)
	})
	fwd(nil, netip.AddrPort{})
	<-done
	if v := value("tether_agent_sessions", sessionForwardTCP); v != 0 {
		t.Errorf("open TCP forwards after it returned: %v, want 0", v)
	}
	// No tunnel yet: no peers on either path.
	for _, path := range []string{"direct", "derp"} {
		if v, ok, _ := metricstest.Value(reg, "tether_agent_peers", "path", path); !ok || v != 0 {
			t.Errorf("peers on %s without a tunnel: %v (present %v)", path, v, ok)
		}
	}
}
