package servercmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"

	"github.com/google/uuid"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/relay"
	"github.com/tetherdev/tether/replica"
	"github.com/tetherdev/tether/server/healthcheck"
)

// cluster is this server's part in a deployment of several replicas that
// share one PostgreSQL database: it registers the replica, passes
// coordination events between its coordinator and the other replicas', and
// meshes its relay with theirs.
type cluster struct {
	id       uuid.UUID
	manager  *replica.Manager
	relayURL string
	logger   *slog.Logger
}

// openCluster opens this replica's membership on s.PostgresURL: the
// manager can publish (it is the coordinator's bus) and knows the mesh
// key, but the replica joins only at join. relayURL is where the other
// replicas reach our relay ("" if they cannot).
func openCluster(ctx context.Context, s Settings, relayURL string, logger *slog.Logger) (*cluster, error) {
	c := &cluster{id: uuid.New(), relayURL: relayURL, logger: logger}
	host, _ := os.Hostname()
	m, err := replica.Open(ctx, replica.Options{
		URL:    s.PostgresURL,
		Self:   replica.Info{ID: c.id, RelayURL: relayURL, Hostname: host},
		Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("join the replicas on --postgres-url: %w", err)
	}
	c.manager = m
	return c, nil
}

// meshKey is the deployment's relay mesh key.
func (c *cluster) meshKey() string { return c.manager.MeshKey() }

// join makes this server a replica of the deployment: from here on the
// other replicas' events go to co, and their relays are meshed with d (nil
// without a built-in relay).
func (c *cluster) join(ctx context.Context, co *coordinator.Coordinator, d *relayMesh) error {
	err := c.manager.Join(ctx, replica.Handlers{
		OnEvent:  co.HandleEvent,
		OnResync: co.Resync,
		OnPeers: func(live []replica.Info) {
			if d != nil {
				d.setReplicas(meshPeers(live))
			}
		},
		OnGone: func(gone replica.Info) {
			c.logger.Info("replica gone", slog.String("replica", gone.ID.String()), slog.String("hostname", gone.Hostname))
			co.ReplicaGone(gone.ID)
		},
	})
	if err != nil {
		return fmt.Errorf("join the replicas on --postgres-url: %w", err)
	}
	c.logger.Info("replica started", slog.String("replica", c.id.String()), slog.String("relay_url", c.relayURL),
		slog.Int("other_replicas", len(c.manager.Peers())))
	return nil
}

// meshPeers are the relays of the other replicas.
func meshPeers(live []replica.Info) []relay.MeshPeer {
	out := make([]relay.MeshPeer, 0, len(live))
	for _, r := range live {
		out = append(out, relay.MeshPeer{ID: "replica " + r.ID.String(), URL: r.RelayURL})
	}
	return out
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

// close leaves the deployment: the others see this replica gone at their
// next heartbeat.
func (c *cluster) close() { c.manager.Close() }

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
