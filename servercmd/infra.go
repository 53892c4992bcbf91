package servercmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"

	"slices"
	"sync"

	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/peerrelay"
	"github.com/tetherdev/tether/relay"
)

// infra is what the server runs beside its API: the coordinator, the
// built-in relay with its STUN servers, and with --postgres-url its part
// in the replicas.
//
// startInfra builds them in the order of their dependencies, so that each
// gets what it needs when it is made and nothing attaches late:
//
//	STUN          its port goes into the DERP map
//	DERP map      the coordinator hands it to every peer
//	replica       opened: it is the coordinator's bus and holds the mesh key
//	coordinator
//	relay         admits the keys the coordinator knows; the mesh key
//	replica       joined: the others' events go to the coordinator, their
//	              relays to the relay's mesh
//	UDP relay     a peer of the coordinator; it reaches its clients
//	              through the DERP map's relays
//
// The command owns all of them, the coordinator included: the API server
// only serves streams on it. close takes them down after the API server.
type infra struct {
	derpMap *tailcfg.DERPMap
	coord   *coordinator.Coordinator
	derp    *relay.DERP      // nil without a built-in relay
	mesh    *relayMesh       // the relay's mesh peers; nil without a built-in relay
	stun    *relay.STUN      // nil without built-in STUN servers
	cluster *cluster         // nil without --postgres-url
	udp     *peerrelay.Relay // nil with --udp-relay-address disable
}

// startInfra starts what s asks for. relayURL is where other replicas
// reach our relay (with --postgres-url).
func startInfra(ctx context.Context, s Settings, udp udpRelaySettings, accessURL *url.URL, relayURL string, secrets deploymentSecrets, logger *slog.Logger) (_ *infra, err error) {
	n := &infra{}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	derpLogger := logger.With(slog.String("component", "derp"))
	if n.stun, err = startSTUN(s, derpLogger); err != nil {
		return nil, err
	}
	stunPort := 0
	if n.stun != nil {
		stunPort = n.stun.Port()
	}
	if n.derpMap, err = buildDERPMap(ctx, s, accessURL, stunPort); err != nil {
		return nil, err
	}

	coordOpts := coordinator.Options{
		Logger:  logger.With(slog.String("component", "coordinator")),
		DERPMap: n.derpMap,
	}
	// Without replicas, the mesh key is a deployment secret in the store,
	// so that it outlives a restart: workspace proxies mesh with it.
	meshKey := ""
	if secrets != nil && s.PostgresURL == "" {
		b, err := secrets.DeploymentSecret(ctx, relayMeshKeySecret, func() []byte {
			var k [32]byte
			rand.Read(k[:])
			return []byte(hex.EncodeToString(k[:]))
		})
		if err != nil {
			return nil, fmt.Errorf("read the relay mesh key: %w", err)
		}
		meshKey = string(b)
	}
	if s.PostgresURL != "" {
		if n.cluster, err = openCluster(ctx, s, relayURL, logger.With(slog.String("component", "replica"))); err != nil {
			return nil, err
		}
		coordOpts.Replica, coordOpts.Bus = n.cluster.id, n.cluster.manager
		meshKey = n.cluster.meshKey()
	}
	n.coord = coordinator.New(coordOpts)

	if s.DERPServerEnable {
		if n.derp, err = relay.NewDERP(relay.Options{Logger: derpLogger, Keys: n.coord, MeshKey: meshKey}); err != nil {
			return nil, err
		}
		n.mesh = &relayMesh{derp: n.derp}
	}
	if n.cluster != nil {
		if err := n.cluster.join(ctx, n.coord, n.mesh); err != nil {
			return nil, err
		}
	}
	if n.udp, err = startUDPRelay(ctx, udp, n.derpMap, n.coord, s, accessURL, logger.With(slog.String("component", "udprelay"))); err != nil {
		return nil, err
	}
	return n, nil
}

// close stops everything, once the API server has closed (no stream is
// left on the coordinator): the coordinator stops publishing, the replica
// leaves the deployment (the others count it gone and stop meshing with
// it), then the relay and the STUN servers stop. It is safe on a partly
// started infra.
func (n *infra) close() {
	if n.udp != nil {
		n.udp.Close()
	}
	if n.coord != nil {
		n.coord.Close()
	}
	if n.cluster != nil {
		n.cluster.close()
	}
	if n.derp != nil {
		n.derp.Close()
	}
	if n.stun != nil {
		n.stun.Close()
	}
}

// relayMeshKeySecret names the relay mesh key in the store.
const relayMeshKeySecret = "relay-mesh-key"

// deploymentSecrets is the store's keeper of shared secrets; nil leaves
// the relay a random mesh key of its own (tests).
type deploymentSecrets interface {
	DeploymentSecret(ctx context.Context, name string, generate func() []byte) ([]byte, error)
}

// relayMesh keeps the built-in relay meshed with the other replicas' relays
// and the healthy workspace proxies' relays, which change apart.
type relayMesh struct {
	derp *relay.DERP

	mu       sync.Mutex
	replicas []relay.MeshPeer // guarded by mu
	proxies  []relay.MeshPeer // guarded by mu
}

func (m *relayMesh) setReplicas(ps []relay.MeshPeer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replicas = ps
	m.derp.SetMeshPeers(append(slices.Clone(m.replicas), m.proxies...))
}

// setProxies takes the proxies' relays from the API server.
func (m *relayMesh) setProxies(ps []tether.RelayPeer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proxies = m.proxies[:0]
	for _, p := range ps {
		m.proxies = append(m.proxies, relay.MeshPeer{ID: p.ID, URL: p.URL})
	}
	m.derp.SetMeshPeers(append(slices.Clone(m.replicas), m.proxies...))
}
