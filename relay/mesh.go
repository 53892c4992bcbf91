package relay

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"
)

// The mesh links this relay with the other relays of the deployment, the
// way Tailscale's derper meshes the nodes of a region: for each other
// relay, a mesh client (authenticated by the shared mesh key) watches
// which peers are connected there, and packets for them are forwarded to
// it. A client that reached one relay can then talk to a peer that reached
// another.

// MeshPeer is another relay of the deployment.
type MeshPeer struct {
	// ID names the relay's server for as long as it runs (a replica's ID,
	// say), in logs and to tell a relay that moved from a new one.
	ID string
	// URL is where this server reaches that relay: scheme and host, such
	// as http://10.0.0.12:3000 (the relay is at /derp under it). A peer
	// without one is not meshed with.
	URL string
}

// mesh is the set of links of one relay.
type mesh struct {
	derp   *derpserver.Server
	logger *slog.Logger

	mu     sync.Mutex
	links  map[string]*meshLink // by MeshPeer.ID; guarded by mu
	closed bool                 // guarded by mu
	wg     sync.WaitGroup
}

// meshLink is the connection to one other relay.
type meshLink struct {
	url    string
	client *derphttp.Client
	cancel context.CancelFunc
}

func newMesh(d *derpserver.Server, logger *slog.Logger) *mesh {
	return &mesh{derp: d, logger: logger, links: make(map[string]*meshLink)}
}

// set makes the links match peers: it links to new ones (and to ones
// whose URL changed) and drops those that are gone.
func (m *mesh) set(peers []MeshPeer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	want := make(map[string]string)
	for _, p := range peers {
		if p.URL != "" {
			want[p.ID] = p.URL
		}
	}
	for id, l := range m.links {
		if url, ok := want[id]; !ok || url != l.url {
			m.dropLocked(id)
		}
	}
	for id, url := range want {
		if _, ok := m.links[id]; !ok {
			if err := m.linkLocked(id, url); err != nil {
				m.logger.Warn("cannot mesh with relay", slog.String("peer", id), slog.String("relay_url", url), slog.Any("error", err))
			}
		}
	}
}

// linkLocked starts watching the relay of peer id at url.
func (m *mesh) linkLocked(id, url string) error {
	logf := func(format string, args ...any) {
		m.logger.Debug(fmt.Sprintf(format, args...), slog.String("peer", id))
	}
	c, err := derphttp.NewClient(m.derp.PrivateKey(), strings.TrimSuffix(url, "/")+"/derp", logf, netmon.NewStatic())
	if err != nil {
		return err
	}
	c.MeshKey = m.derp.MeshKey()
	c.WatchConnectionChanges = true
	ctx, cancel := context.WithCancel(context.Background())
	m.links[id] = &meshLink{url: url, client: c, cancel: cancel}
	add := func(p derp.PeerPresentMessage) { m.derp.AddPacketForwarder(p.Key, c) }
	remove := func(p derp.PeerGoneMessage) { m.derp.RemovePacketForwarder(p.Peer, c) }
	notifyErr := func(err error) {
		m.logger.Debug("mesh link failed; retrying", slog.String("peer", id), slog.Any("error", err))
	}
	m.wg.Go(func() {
		// It ignores a link to our own relay (the server key is ours).
		c.RunWatchConnectionLoop(ctx, m.derp.PublicKey(), logf, add, remove, notifyErr)
	})
	m.logger.Info("meshing relay", slog.String("peer", id), slog.String("relay_url", url))
	return nil
}

// dropLocked ends the link to peer id. Closing the client ends its watch,
// which withdraws the forwarding it set up.
func (m *mesh) dropLocked(id string) {
	l := m.links[id]
	if l == nil {
		return
	}
	delete(m.links, id)
	l.cancel()
	l.client.Close()
	m.logger.Info("relay mesh link dropped", slog.String("peer", id))
}

// close drops every link and waits for their goroutines; set does nothing
// afterwards.
func (m *mesh) close() {
	m.mu.Lock()
	m.closed = true
	for id := range m.links {
		m.dropLocked(id)
	}
	m.mu.Unlock()
	m.wg.Wait()
}
