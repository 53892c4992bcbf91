package agent

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

func TestSummarizeConnections(t *testing.T) {
	now := time.Now()
	recent, old := now.Add(-time.Minute), now.Add(-activeWithin-time.Second)
	relayed := func(region string, hs time.Time) tunnel.PeerStatus {
		return tunnel.PeerStatus{DERPRegionCode: region, LastHandshake: hs}
	}
	direct := func(ep string, hs time.Time) tunnel.PeerStatus {
		return tunnel.PeerStatus{Direct: true, Endpoint: ep, DERPRegionCode: "r", LastHandshake: hs}
	}
	udpRelayed := func(ep string, hs time.Time) tunnel.PeerStatus {
		return tunnel.PeerStatus{UDPRelay: true, Endpoint: ep, DERPRegionCode: "r", LastHandshake: hs}
	}
	for _, tc := range []struct {
		name  string
		peers []tunnel.PeerStatus
		want  *tether.WorkspaceConnection
	}{
		{"no peers", nil, nil},
		{"never a handshake", []tunnel.PeerStatus{relayed("r1", time.Time{})}, nil},
		{"handshake too old", []tunnel.PeerStatus{direct("192.0.2.1:1", old)}, nil},
		{"relayed", []tunnel.PeerStatus{relayed("r1", recent), relayed("r2", recent)},
			&tether.WorkspaceConnection{Path: tether.PathDERP, DERPRegion: "r1", Peers: 2}},
		{"direct wins", []tunnel.PeerStatus{relayed("r1", recent), direct("192.0.2.1:1", recent), direct("192.0.2.2:1", recent)},
			&tether.WorkspaceConnection{Path: tether.PathDirect, Endpoint: "192.0.2.1:1", Peers: 3}},
		{"UDP relay beats DERP", []tunnel.PeerStatus{relayed("r1", recent), udpRelayed("198.18.1.2:3479", recent)},
			&tether.WorkspaceConnection{Path: tether.PathRelay, Endpoint: "198.18.1.2:3479", Peers: 2}},
		{"direct beats the UDP relay", []tunnel.PeerStatus{udpRelayed("198.18.1.2:3479", recent), direct("192.0.2.1:1", recent), udpRelayed("198.18.1.2:3479", recent)},
			&tether.WorkspaceConnection{Path: tether.PathDirect, Endpoint: "192.0.2.1:1", Peers: 3}},
		{"inactive direct ignored", []tunnel.PeerStatus{direct("192.0.2.1:1", old), relayed("r1", recent)},
			&tether.WorkspaceConnection{Path: tether.PathDERP, DERPRegion: "r1", Peers: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarizeConnections(&tunnel.Status{Peers: tc.peers}, now)
			if !sameConnection(got, tc.want) {
				t.Errorf("summary = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestReportConnections drives the reporting loop tick by tick: it reports
// a change, not a repeat, and retries a report the server refused.
func TestReportConnections(t *testing.T) {
	ctx := testContext(t)
	var failing atomic.Bool
	handler, reports := recorder[tether.AgentConnectionsReport](t, func() int {
		if failing.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/agent/connections", handler)
	a := newAgent(t, mux)

	var mu sync.Mutex
	var peers []tunnel.PeerStatus
	setPeers := func(ps ...tunnel.PeerStatus) {
		mu.Lock()
		defer mu.Unlock()
		peers = ps
	}
	status := func(context.Context) *tunnel.Status {
		mu.Lock()
		defer mu.Unlock()
		return &tunnel.Status{Peers: peers}
	}
	tick := make(chan time.Time) // a send returns once the loop took it
	var wg sync.WaitGroup
	lctx, stop := context.WithCancel(ctx)
	wg.Go(func() { a.reportConnections(lctx, status, tick, a.logger) })
	defer func() {
		stop()
		wg.Wait()
	}()
	// quiet sends a tick and checks that nothing was reported since the
	// last report the test took: the loop takes a tick only once it is
	// done with the one before.
	quiet := func(what string) {
		t.Helper()
		tick <- time.Now()
		select {
		case r := <-reports:
			t.Fatalf("%s: reported %+v", what, r.Connection)
		default:
		}
	}

	relayed := tunnel.PeerStatus{DERPRegionCode: "r1", LastHandshake: time.Now()}
	setPeers(relayed)
	tick <- time.Now()
	if r := next(t, ctx, reports, "the first report"); r.Connection == nil || r.Connection.Path != tether.PathDERP {
		t.Fatalf("first report = %+v, want relayed", r.Connection)
	}
	quiet("nothing changed")
	quiet("nothing changed still")

	setPeers(relayed, tunnel.PeerStatus{Direct: true, Endpoint: "192.0.2.1:1", LastHandshake: time.Now()})
	tick <- time.Now()
	if r := next(t, ctx, reports, "the change"); r.Connection == nil || r.Connection.Path != tether.PathDirect || r.Connection.Peers != 2 {
		t.Fatalf("report after the change = %+v, want direct with 2 peers", r.Connection)
	}

	// The server refuses the next report: it is sent again.
	failing.Store(true)
	setPeers()
	tick <- time.Now()
	next(t, ctx, reports, "the refused report")
	failing.Store(false)
	tick <- time.Now()
	if r := next(t, ctx, reports, "the retry"); r.Connection != nil {
		t.Fatalf("retried report = %+v, want no connection", r.Connection)
	}
	quiet("after the retry")
}
