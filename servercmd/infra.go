package servercmd

import (
	"context"
	"log/slog"
	"net/url"

	"tailscale.com/tailcfg"

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
	stun    *relay.STUN      // nil without built-in STUN servers
	cluster *cluster         // nil without --postgres-url
	udp     *peerrelay.Relay // nil with --udp-relay-address disable
}

// startInfra starts what s asks for. relayURL is where other replicas
// reach our relay (with --postgres-url).
func startInfra(ctx context.Context, s Settings, udp udpRelaySettings, accessURL *url.URL, relayURL string, logger *slog.Logger) (_ *infra, err error) {
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
	meshKey := "" // a random one of the relay's own
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
	}
	if n.cluster != nil {
		if err := n.cluster.join(ctx, n.coord, n.derp); err != nil {
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
