package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// How the agent keeps the server informed of its tunnels' paths: it looks
// every connectionsPoll and reports a change at once, and the same summary
// again every connectionsResend so that a restarted server learns it.
const (
	connectionsPoll   = 5 * time.Second
	connectionsResend = time.Minute
	// activeWithin is how recent a handshake must be for a tunnel to count.
	activeWithin = 3 * time.Minute
)

// summarizeConnections reduces the tunnel's peers to one path: direct if
// any active peer is direct, else the relay of the first relayed one.
func summarizeConnections(st *tunnel.Status, now time.Time) *tether.WorkspaceConnection {
	var c *tether.WorkspaceConnection
	for _, p := range st.Peers {
		if !peerActive(p, now) {
			continue
		}
		if c == nil {
			c = &tether.WorkspaceConnection{Path: tether.PathDERP, DERPRegion: p.DERPRegionCode}
		}
		c.Peers++
		if p.Direct && c.Path != tether.PathDirect {
			c.Path, c.Endpoint, c.DERPRegion = tether.PathDirect, p.Endpoint, ""
		}
	}
	return c
}

// reportConnections summarizes the tunnel's status at every tick (every
// connectionsPoll; the tests tick it themselves) and reports it when it
// changed, when the last report is connectionsResend old, or when the
// last one failed.
func (a *Agent) reportConnections(ctx context.Context, status func(context.Context) *tunnel.Status, tick <-chan time.Time, log *slog.Logger) {
	var last *tether.WorkspaceConnection
	var sentAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		cur := summarizeConnections(status(ctx), time.Now())
		if sameConnection(cur, last) && time.Since(sentAt) < connectionsResend {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.client.ReportConnections(rctx, tether.AgentConnectionsReport{Connection: cur})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("report connections", slog.Any("err", err))
			}
			continue
		}
		last, sentAt = cur, time.Now()
	}
}

func sameConnection(a, b *tether.WorkspaceConnection) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
