package serve

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/google/uuid"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"

	"github.com/tetherdev/tether/replica"
)

// mesh links this replica's built-in relay with the relays of the other
// replicas, the way Tailscale's derper meshes the nodes of a region: for
// each other replica, a mesh client watches which peers are connected
// there, and packets for them are forwarded to it. A client that reached
// one replica can then talk to an agent that reached another.
type mesh struct {
	derp   *derpserver.Server
	logger *slog.Logger

	mu     sync.Mutex
	links  map[uuid.UUID]*meshLink // by replica ID
	closed bool
	wg     sync.WaitGroup
}

// meshLink is the connection to one other replica's relay.
type meshLink struct {
	relayURL string
	client   *derphttp.Client
	cancel   context.CancelFunc
}

func newMesh(d *derpserver.Server, logger *slog.Logger) *mesh {
	return &mesh{derp: d, logger: logger, links: make(map[uuid.UUID]*meshLink)}
}

// update makes the links match the live replicas: it links to new ones
// (and to ones whose relay moved) and drops those that are gone.
func (m *mesh) update(live []replica.Info) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	want := make(map[uuid.UUID]string)
	for _, r := range live {
		if r.RelayURL != "" {
			want[r.ID] = r.RelayURL
		}
	}
	for id, l := range m.links {
		if url, ok := want[id]; !ok || url != l.relayURL {
			m.dropLocked(id)
		}
	}
	for id, url := range want {
		if _, ok := m.links[id]; !ok {
			if err := m.linkLocked(id, url); err != nil {
				m.logger.Warn("cannot mesh with replica", slog.String("replica", id.String()), slog.String("relay_url", url), slog.Any("error", err))
			}
		}
	}
}

// linkLocked starts watching the relay of replica id at relayURL.
func (m *mesh) linkLocked(id uuid.UUID, relayURL string) error {
	logf := func(format string, args ...any) {
		m.logger.Debug(fmt.Sprintf(format, args...), slog.String("replica", id.String()))
	}
	c, err := derphttp.NewClient(m.derp.PrivateKey(), strings.TrimSuffix(relayURL, "/")+"/derp", logf, netmon.NewStatic())
	if err != nil {
		return err
	}
	c.MeshKey = m.derp.MeshKey()
	c.WatchConnectionChanges = true
	ctx, cancel := context.WithCancel(context.Background())
	m.links[id] = &meshLink{relayURL: relayURL, client: c, cancel: cancel}
	add := func(p derp.PeerPresentMessage) { m.derp.AddPacketForwarder(p.Key, c) }
	remove := func(p derp.PeerGoneMessage) { m.derp.RemovePacketForwarder(p.Peer, c) }
	notifyErr := func(err error) {
		m.logger.Debug("mesh link to replica failed; retrying", slog.String("replica", id.String()), slog.Any("error", err))
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// It ignores a link to our own relay (the server key is ours).
		c.RunWatchConnectionLoop(ctx, m.derp.PublicKey(), logf, add, remove, notifyErr)
	}()
	m.logger.Info("meshing relay with replica", slog.String("replica", id.String()), slog.String("relay_url", relayURL))
	return nil
}

// dropLocked ends the link to replica id. Closing the client ends its
// watch, which withdraws the forwarding it set up.
func (m *mesh) dropLocked(id uuid.UUID) {
	l := m.links[id]
	if l == nil {
		return
	}
	delete(m.links, id)
	l.cancel()
	l.client.Close()
	m.logger.Info("relay mesh link dropped", slog.String("replica", id.String()))
}

// close drops every link and waits for their goroutines.
func (m *mesh) close() {
	m.mu.Lock()
	m.closed = true
	for id := range m.links {
		m.dropLocked(id)
	}
	m.mu.Unlock()
	m.wg.Wait()
}
