package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"tailscale.com/disco"
	"tailscale.com/net/udprelay/endpoint"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/wgengine/filter"
	"tailscale.com/wgengine/magicsock"

	"github.com/tetherdev/tether"
)

// UDP relays (Tailscale's peer relays, package tailscale.com/net/udprelay).
//
// Two peers that cannot reach each other directly (both behind hard NATs,
// say) may still both reach a UDP relay: each asks it, over DERP, to
// allocate an endpoint for their pair of disco keys, tells the other
// (CallMeMaybeVia, over DERP), binds it, and sends its WireGuard packets,
// still encrypted end to end, to the relay, which forwards them to the
// other. magicsock does all of that, preferring a direct path and falling
// back to DERP; it needs to be told which peers are relays, and the relay
// which peers may use it. Both are told by capabilities in the packet
// filter, so two more kinds of peers exist besides the ordinary ones:
//
//   - a relay (UpsertRelay), on agents and clients: it holds
//     tailcfg.PeerCapabilityRelayTarget on us, which makes it a candidate
//     relay for our paths;
//   - a relay client (UpsertRelayClient), on the relay's own Conn: it holds
//     tailcfg.PeerCapabilityRelay on us, which lets it ask us for
//     endpoints (Options.RelayAllocator answers).
//
// Neither is a WireGuard peer (no session is ever made with it, and its
// handshakes are refused) nor a source the filter accepts packets from,
// nor an address we can dial: it is a magicsock peer with a capability,
// and nothing more.

// RelayAllocator allocates UDP relay endpoints on a relay's Conn: from is
// the relay client that asked, pair the disco keys of the two peers that
// want to talk through us (from is one of them). It refuses a pair that
// may not talk, with an error. It must not block for long.
type RelayAllocator func(from uuid.UUID, pair [2]key.DiscoPublic) (endpoint.ServerEndpoint, error)

// relayKind tells the peers of a Conn apart.
type relayKind int8

const (
	dataPeer    relayKind = iota // an ordinary peer: UpsertPeer
	relayPeer                    // a UDP relay we may use: UpsertRelay
	relayClient                  // may use us as a UDP relay: UpsertRelayClient
)

// UpsertRelay adds the UDP relay with the given ID, or updates its node:
// from now on magicsock may relay our paths through it. It has no other
// effect: the relay can send us nothing that we accept. A Conn started
// with Options.DisableUDPRelay ignores relays. n must be valid for id.
func (c *Conn) UpsertRelay(id uuid.UUID, n *tether.Node) error {
	if c.noUDPRelay {
		return nil
	}
	return c.upsertRelay(id, n, relayPeer)
}

// UpsertRelayClient, on a relay's Conn (Options.RelayAllocator set), adds
// the peer with the given ID as one that may ask us to allocate relay
// endpoints, or updates its node. n must be valid for id.
func (c *Conn) UpsertRelayClient(id uuid.UUID, n *tether.Node) error {
	if c.allocator == nil {
		return fmt.Errorf("peer %s: this tunnel is not a relay", id)
	}
	return c.upsertRelay(id, n, relayClient)
}

func (c *Conn) upsertRelay(id uuid.UUID, n *tether.Node, kind relayKind) error {
	if id == c.id || n.Key == c.key.Public() {
		return fmt.Errorf("peer %s: is this peer itself", id)
	}
	n = cloneNode(n)

	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if c.isClosing() {
		return errClosed
	}
	table := c.peers.Load()
	if _, ok := table.byID[id]; ok {
		return fmt.Errorf("peer %s: is an ordinary peer", id)
	}
	if other, ok := table.byKey[n.Key]; ok {
		return fmt.Errorf("peer %s: key %s belongs to peer %s", id, n.Key.ShortString(), other.id)
	}
	for _, r := range table.relays {
		if r.key() == n.Key && r.id != id {
			return fmt.Errorf("peer %s: key %s belongs to peer %s", id, n.Key.ShortString(), r.id)
		}
	}
	old := table.relays[id]
	if old != nil && old.kind != kind {
		return fmt.Errorf("peer %s: was introduced as another kind", id)
	}
	addr := tether.TunnelIP(id)
	p := &peer{id: id, addr: addr, prefix: netip.PrefixFrom(addr, addr.BitLen()), node: n, kind: kind}
	nodeID := c.nextNodeID
	if old != nil {
		nodeID = old.view.ID()
	} else {
		c.nextNodeID++
	}
	// No endpoints: everything between us goes over DERP (allocation
	// requests and their answers), and no WireGuard path is ever made.
	p.view = tailcfgNode(nodeID, p, true).View()

	if old != nil && old.key() != n.Key {
		c.magic.RemovePeer(old.view.ID())
	}
	c.peers.Store(table.withRelay(p))
	// The filter first: magicsock reads the capabilities as the peer
	// arrives.
	c.setFilterLocked()
	c.magic.UpsertPeer(p.view)
	if old == nil {
		c.logger.Debug("relay peer added", "peer", id, "kind", kind, "key", n.Key.ShortString(), "derp", n.PreferredDERP)
	}
	return nil
}

// removeRelayLocked forgets a relay or relay client; it reports whether id
// was one. c.peerMu must be held.
func (c *Conn) removeRelayLocked(id uuid.UUID) bool {
	table := c.peers.Load()
	old, ok := table.relays[id]
	if !ok {
		return false
	}
	c.peers.Store(table.without(id))
	c.setFilterLocked()
	c.magic.RemovePeer(old.view.ID())
	c.logger.Debug("relay peer removed", "peer", id)
	return true
}

// relayCapMatches are the filter rules that grant the relays and relay
// clients their capability on self, and nothing else: a rule with no
// destination ports matches no packet.
func relayCapMatches(self netip.Prefix, table *peerTable) []filter.Match {
	var relays, clients []netip.Prefix
	for _, p := range table.relays {
		switch p.kind {
		case relayPeer:
			relays = append(relays, p.prefix)
		case relayClient:
			clients = append(clients, p.prefix)
		}
	}
	var ms []filter.Match
	for _, m := range []struct {
		srcs []netip.Prefix
		cap  tailcfg.PeerCapability
	}{
		{relays, tailcfg.PeerCapabilityRelayTarget},
		{clients, tailcfg.PeerCapabilityRelay},
	} {
		if len(m.srcs) == 0 {
			continue
		}
		slices.SortFunc(m.srcs, netip.Prefix.Compare)
		ms = append(ms, filter.Match{
			Srcs: m.srcs,
			Caps: []filter.CapMatch{{Dst: self, Cap: m.cap}},
		})
	}
	return ms
}

// onRelayAllocReq answers a relay client's request for an endpoint, on a
// relay's Conn. magicsock has checked that the sender holds the capability
// and is one of the pair.
func (c *Conn) onRelayAllocReq(req magicsock.UDPRelayAllocReq) {
	var from *peer
	for _, p := range c.peers.Load().relays {
		if p.kind == relayClient && p.key() == req.RxFromNodeKey {
			from = p
			break
		}
	}
	if from == nil || req.Message == nil {
		return
	}
	se, err := c.allocator(from.id, req.Message.ClientDisco)
	if err != nil {
		c.logger.Debug("relay endpoint refused", "peer", from.id, "err", err)
		return
	}
	resp := magicsock.UDPRelayAllocResp{
		ReqRxFromNodeKey:  req.RxFromNodeKey,
		ReqRxFromDiscoKey: req.RxFromDiscoKey,
		Message: &disco.AllocateUDPRelayEndpointResponse{
			Generation: req.Message.Generation,
			UDPRelayEndpoint: disco.UDPRelayEndpoint{
				ServerDisco:         se.ServerDisco,
				ClientDisco:         se.ClientDisco,
				LamportID:           se.LamportID,
				VNI:                 se.VNI,
				BindLifetime:        se.BindLifetime.Duration,
				SteadyStateLifetime: se.SteadyStateLifetime.Duration,
				AddrPorts:           se.AddrPorts,
			},
		},
	}
	// Not from this goroutine: magicsock's subscriber of the answer is
	// the publisher of the request, and would wait for itself. Publish
	// returns at once once the bus closes.
	go c.allocResp.Publish(resp)
}

// renewRelayedPeers makes every ordinary peer anew in magicsock after it
// rebound its sockets (on a send error, which the first network check in
// a fresh network namespace often reports, or a link change), if we have
// a UDP relay.
//
// A rebind makes magicsock forget every peer's path, a UDP relay path
// included (noteConnectivityChange), but not when it last looked for relay
// paths (the endpoint's lastUDPRelayPathDiscovery); it looks again only
// discoverUDPRelayPathsInterval (30 s) after that. A direct path comes
// back with the next disco pings; a relayed peer stayed on DERP for up to
// 30 s (seen in the NAT lab: TestLabRelayed's pongs, relay → DERP at
// start). Under a new node ID magicsock makes a fresh endpoint, which
// looks for relay paths at the next packet; the relay hands back the
// endpoint it holds for the pair, which the other side still uses. The
// WireGuard peer is reset with it, so that it sends through the fresh
// endpoint: a handshake over DERP, a few milliseconds, which TCP rides
// out (resumeSession).
func (c *Conn) renewRelayedPeers() {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if c.isClosing() {
		return
	}
	table := c.peers.Load()
	hasRelay := false
	for _, r := range table.relays {
		hasRelay = hasRelay || r.kind == relayPeer
	}
	if !hasRelay || len(table.byID) == 0 {
		return
	}
	c.mu.Lock()
	block := c.blockEndpoints
	c.mu.Unlock()
	next := table
	for _, old := range table.byID {
		hadSession := c.sessionUp(old.key())
		p := *old
		p.view = tailcfgNode(c.nextNodeID, &p, block).View()
		c.nextNodeID++
		c.magic.RemovePeer(old.view.ID())
		next = next.with(&p)
		c.peers.Store(next)
		c.magic.UpsertPeer(p.view)
		c.engine.ResetDevicePeer(p.key())
		c.engine.SyncDevicePeer(p.key())
		if hadSession {
			// Under peerMu, after isClosing: Close waits for it.
			c.wg.Add(1)
			go c.resumeSession(p.addr, p.key())
		}
	}
	c.logger.Debug("peers renewed after a rebind, to look for UDP relay paths again", "peers", len(table.byID))
}

// resumeSessionTimeout bounds how long resumeSession tries: as long as
// the peer would keep sending into the dropped session.
const resumeSessionTimeout = 15 * time.Second

// resumeSession brings a WireGuard session with a renewed peer back up at
// once. The peer still holds the session we dropped, and would send into
// it, unanswered, until WireGuard gives up on it (up to 15 s, see
// UpsertPeer); a packet from us starts a fresh handshake, and the search
// for a relay path with it. That first initiation is easily lost: the
// rebind also replaced our relay connection, and the peer refuses one
// that comes within 20 ms of the last it took from us (wireguard-go's
// "handshake flood"), as after a connection's first handshake. wireguard-go
// would send it again only 5 s later; awaitSession does within 200 ms.
func (c *Conn) resumeSession(ip netip.Addr, k key.NodePublic) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), resumeSessionTimeout)
	defer cancel()
	if err := c.awaitSession(ctx, ip, k, PingResult{}, time.Time{}); err != nil {
		c.logger.Debug("no WireGuard session with a renewed peer", "peer", ip, "err", err)
	}
}

// relayAddr returns the relay's "IP:port" from magicsock's
// "IP:port:vni:N".
func relayAddr(s string) string {
	addr, _, _ := strings.Cut(s, ":vni:")
	return addr
}
