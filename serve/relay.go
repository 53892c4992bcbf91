package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/derpmap"
	"github.com/tetherdev/tether/relayguard"
	"tailscale.com/derp/derpserver"
	"tailscale.com/envknob"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// relay is the built-in DERP relay and STUN servers, and the DERP map that
// peers get. The relay serves only the deployment's peers (see package
// relayguard): until attach hands it the coordinator, it admits no one but
// mesh peers.
type relay struct {
	handler http.Handler // nil without a built-in relay
	derpMap *tailcfg.DERPMap
	derp    *derpserver.Server
	guard   *relayguard.Guard
	stun    []*stunserver.STUNServer
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// isDisable reports whether a list flag says "disable".
func isDisable(v []string) bool {
	return len(v) == 1 && strings.EqualFold(strings.TrimSpace(v[0]), "disable")
}

// startRelay starts what the settings ask for and assembles the DERP map.
func startRelay(ctx context.Context, s Settings, accessURL *url.URL, logger *slog.Logger) (*relay, error) {
	r := &relay{}
	ok := false
	defer func() {
		if !ok {
			r.Close()
		}
	}()
	external, err := derpmap.Load(ctx, s.DERPConfigPath, s.DERPConfigURL, nil)
	if err != nil {
		return nil, err
	}

	var builtin *tailcfg.DERPRegion
	if s.DERPServerEnable {
		if s.DERPServerRegionID <= 0 {
			return nil, fmt.Errorf("--derp-server-region-id must be positive, not %d", s.DERPServerRegionID)
		}
		stunPort, err := r.startSTUN(ctx, s.DERPServerSTUNAddresses, logger)
		if err != nil {
			return nil, err
		}
		setDERPQueueDepth()
		r.derp = derpserver.New(key.NewNode(), func(format string, args ...any) {
			logger.Debug(fmt.Sprintf(format, args...))
		})
		if r.guard, err = relayguard.New(r.derp, relayguard.Options{Logger: logger}); err != nil {
			return nil, err
		}
		r.handler = derpserver.AddWebSocketSupport(r.derp, derpserver.Handler(r.derp))
		builtin = derpmap.Builtin{
			AccessURL: accessURL,
			RegionID:  s.DERPServerRegionID,
			Code:      s.DERPServerRegionCode,
			Name:      s.DERPServerRegionName,
			STUNPort:  stunPort,
		}.Region()
	}
	opts := derpmap.Options{Builtin: builtin, External: external}
	switch {
	case isDisable(s.STUNAddresses):
		opts.DisableSTUN = true
	case len(s.STUNAddresses) > 0:
		opts.STUNAddresses = s.STUNAddresses
	}
	if r.derpMap, err = derpmap.Build(opts); err != nil {
		return nil, err
	}
	ok = true
	return r, nil
}

// derpQueueDepthKnob sets how many packets the relay queues for each client
// before dropping; derpserver reads it once, in New.
const derpQueueDepthKnob = "TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH"

// derpQueueDepth replaces the library's default of 32 packets. A bulk
// transfer through the relay overflows 32 (measured: ~0.5% of its packets
// dropped at the head of the queue, none at 256), and the tunnel's
// userspace TCP loses most of its speed to even that much loss. 512 packets
// of at most ~1.4 KB are ~700 KB per client, held only while that client
// reads slower than its peers send.
const derpQueueDepth = 512

// setDERPQueueDepth raises the relay's per-client queue unless the
// operator chose a depth in the environment. The knob is process-wide, and
// only derpserver reads it.
func setDERPQueueDepth() {
	if _, ok := os.LookupEnv(derpQueueDepthKnob); !ok {
		envknob.Setenv(derpQueueDepthKnob, strconv.Itoa(derpQueueDepth))
	}
}

// startSTUN listens on each address and returns the port peers should use
// (that of the first), or 0 when STUN is disabled.
func (r *relay) startSTUN(ctx context.Context, addrs []string, logger *slog.Logger) (int, error) {
	if len(addrs) == 0 || isDisable(addrs) {
		return 0, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	port := 0
	for _, addr := range addrs {
		srv := stunserver.New(sctx)
		if err := srv.Listen(addr); err != nil {
			return 0, fmt.Errorf("built-in STUN server on %s: %w (choose other --derp-server-stun-addresses, or disable)", addr, err)
		}
		r.stun = append(r.stun, srv)
		if port == 0 {
			port = srv.LocalAddr().(*net.UDPAddr).Port
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := srv.Serve(); err != nil && !errors.Is(err, net.ErrClosed) && sctx.Err() == nil {
				logger.Error("STUN server stopped", slog.Any("err", err))
			}
		}()
		logger.Info("STUN server listening", slog.String("addr", srv.LocalAddr().String()))
	}
	return port, nil
}

// attach lets the relay admit the peers the coordinator knows.
func (r *relay) attach(co *coordinator.Coordinator) {
	if r.guard != nil {
		r.guard.Attach(co)
	}
}

// meshKey is the key with which the relay trusts a client whatever its
// node key: the replicas' shared one, or a random one of this server.
// Zero without a built-in relay.
func (r *relay) meshKey() key.DERPMesh {
	if r.derp == nil {
		return key.DERPMesh{}
	}
	return r.derp.MeshKey()
}

// Close stops the relay and STUN servers.
func (r *relay) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	if r.guard != nil {
		r.guard.Close()
	}
	if r.derp != nil {
		r.derp.Close()
	}
}
