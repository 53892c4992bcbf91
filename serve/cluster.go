package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/replica"
	"github.com/tetherdev/tether/server/healthcheck"
)

// cluster is this server's part in a deployment of several replicas that
// share one PostgreSQL database: it registers the replica, passes
// coordination events between its coordinator and the other replicas', and
// meshes its relay with theirs.
type cluster struct {
	id      uuid.UUID
	manager *replica.Manager
	// mesh is nil without a built-in relay; set after the manager starts,
	// while its heartbeat may already call OnPeers.
	mesh  atomic.Pointer[mesh]
	coord atomic.Pointer[coordinator.Coordinator]
}

// startCluster joins the replicas on s.PostgresURL. relayURL is where the
// other replicas reach our relay ("" if they cannot).
func startCluster(ctx context.Context, s Settings, r *relay, relayURL string, logger *slog.Logger) (*cluster, error) {
	c := &cluster{id: uuid.New()}
	host, _ := os.Hostname()
	m, err := replica.Start(ctx, replica.Options{
		URL:    s.PostgresURL,
		Self:   replica.Info{ID: c.id, RelayURL: relayURL, Hostname: host},
		Logger: logger,
		OnEvent: func(ev coordinator.Event) {
			if co := c.coord.Load(); co != nil {
				co.HandleEvent(ev)
			}
		},
		OnResync: func() {
			if co := c.coord.Load(); co != nil {
				co.Resync()
			}
		},
		OnPeers: func(live []replica.Info) {
			if m := c.mesh.Load(); m != nil {
				m.update(live)
			}
		},
		OnGone: func(gone replica.Info) {
			logger.Info("replica gone", slog.String("replica", gone.ID.String()), slog.String("hostname", gone.Hostname))
			if co := c.coord.Load(); co != nil {
				co.ReplicaGone(gone.ID)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("join the replicas on --postgres-url: %w", err)
	}
	c.manager = m
	if r.derp != nil {
		if err := r.derp.SetMeshKey(m.MeshKey()); err != nil {
			m.Close()
			return nil, fmt.Errorf("relay mesh key: %w", err)
		}
		ms := newMesh(r.derp, logger.With(slog.String("component", "mesh")))
		c.mesh.Store(ms)
		ms.update(m.Peers())
	}
	logger.Info("replica started", slog.String("replica", c.id.String()), slog.String("relay_url", relayURL),
		slog.Int("other_replicas", len(m.Peers())))
	return c, nil
}

// healthPeers lists the other replicas for the health report.
func (c *cluster) healthPeers() []healthcheck.Replica {
	var out []healthcheck.Replica
	for _, p := range c.manager.Peers() {
		name := fmt.Sprintf("%s (replica %s)", p.Hostname, p.ID.String()[:8])
		out = append(out, healthcheck.Replica{Hostname: name, RelayURL: p.RelayURL})
	}
	return out
}

// attach starts handing the other replicas' events to co.
func (c *cluster) attach(co *coordinator.Coordinator) { c.coord.Store(co) }

// close leaves the deployment: the others see this replica gone at their
// next heartbeat.
func (c *cluster) close() {
	if m := c.mesh.Load(); m != nil {
		m.close()
	}
	c.manager.Close()
}

// relayURLFor is where other replicas reach this server's relay: the
// --derp-server-relay-url given, or http:// and the listening address when
// that names a host (not 0.0.0.0 or ::) and the server speaks plain HTTP.
// It returns "" with a warning otherwise: relayed connections between a
// client and an agent on different replicas then fail.
func relayURLFor(s Settings, addr net.Addr, useTLS bool, logger *slog.Logger) (string, error) {
	if s.DERPServerRelayURL != "" {
		u, err := url.Parse(s.DERPServerRelayURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--derp-server-relay-url %q must be an http:// or https:// URL with a host", s.DERPServerRelayURL)
		}
		return u.Scheme + "://" + u.Host, nil
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() && !useTLS {
		return "http://" + tcp.String(), nil
	}
	logger.Warn("other replicas cannot reach this replica's relay: set --derp-server-relay-url to a URL they can reach; " +
		"until then, a client and an agent on different replicas connect only if a direct path works")
	return "", nil
}
