package tunnel

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"go4.org/netipx"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/tailcfg"
	"tailscale.com/types/ipproto"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/views"
	"tailscale.com/wgengine"
	"tailscale.com/wgengine/filter"

	"github.com/tetherdev/tether"
)

// peer is one upserted peer as the engine sees it.
type peer struct {
	id     uuid.UUID
	addr   netip.Addr   // tether.TunnelIP(id)
	prefix netip.Prefix // addr/128
	node   *tether.Node // as the caller gave it, to rebuild view
	view   tailcfg.NodeView
	kind   relayKind // dataPeer, or a relay peer (relay.go)
}

func (p *peer) key() key.NodePublic { return p.node.Key }

// peerTable is an immutable snapshot of the peers; changes copy it. The
// ordinary peers are in byID, byKey and byAddr, which WireGuard, the
// filter and dials consult; relays and relay clients (relay.go) only in
// relays, by ID.
type peerTable struct {
	byID   map[uuid.UUID]*peer
	byKey  map[key.NodePublic]*peer
	byAddr map[netip.Addr]*peer
	relays map[uuid.UUID]*peer
}

func (t *peerTable) with(p *peer) *peerTable {
	n := t.without(p.id)
	n.byID[p.id] = p
	n.byKey[p.key()] = p
	n.byAddr[p.addr] = p
	return n
}

func (t *peerTable) withRelay(p *peer) *peerTable {
	n := t.without(p.id)
	n.relays[p.id] = p
	return n
}

func (t *peerTable) without(id uuid.UUID) *peerTable {
	n := &peerTable{
		byID:   maps.Clone(t.byID),
		byKey:  maps.Clone(t.byKey),
		byAddr: maps.Clone(t.byAddr),
		relays: maps.Clone(t.relays),
	}
	if n.byID == nil {
		n.byID = make(map[uuid.UUID]*peer)
		n.byKey = make(map[key.NodePublic]*peer)
		n.byAddr = make(map[netip.Addr]*peer)
	}
	if n.relays == nil {
		n.relays = make(map[uuid.UUID]*peer)
	}
	if old, ok := n.byID[id]; ok {
		delete(n.byID, id)
		delete(n.byKey, old.key())
		delete(n.byAddr, old.addr)
	}
	delete(n.relays, id)
	return n
}

// UpsertPeer adds the peer with the given ID, or updates it with a newer
// node. It is how the coordinator's introductions take effect: from now on
// the peer may reach our listeners and we may dial it. The peer's address
// is tether.TunnelIP(id), whatever the node says. A node with a key that
// another peer uses, or our own, is rejected.
//
// n must be valid for id (tether.Node.Validate); the Conn does not check
// it again. Nodes are checked once on their way, where they enter a
// process: the coordinator checks what peers send it, and the
// coordination client what the coordinator sends (package coordclient).
func (c *Conn) UpsertPeer(id uuid.UUID, n *tether.Node) error {
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
	if other, ok := table.byKey[n.Key]; ok && other.id != id {
		return fmt.Errorf("peer %s: key %s belongs to peer %s", id, n.Key.ShortString(), other.id)
	}
	for _, r := range table.relays {
		if r.id == id || r.key() == n.Key {
			return fmt.Errorf("peer %s: is a relay, or has the key of relay %s", id, r.id)
		}
	}
	old := table.byID[id]
	c.stopProbeLocked(id) // reintroduced: no longer lost
	if old != nil && old.key() != n.Key {
		// A new key is a new process: the connections with the old one
		// are dead. End them before the new peer can have any.
		c.peerGoneLocked(old, ErrPeerRestarted)
	}
	addr := tether.TunnelIP(id)
	p := &peer{id: id, addr: addr, prefix: netip.PrefixFrom(addr, addr.BitLen()), node: n}
	nodeID := c.nextNodeID
	if old != nil {
		nodeID = old.view.ID()
	} else {
		c.nextNodeID++
	}
	c.mu.Lock()
	block := c.blockEndpoints
	c.mu.Unlock()
	p.view = tailcfgNode(nodeID, p, block).View()

	c.peers.Store(table.with(p))
	c.setFilterLocked()
	c.magic.UpsertPeer(p.view)
	if old != nil && old.key() != n.Key {
		// The peer restarted with a new key: drop the old WireGuard peer,
		// which the config source no longer knows.
		c.engine.SyncDevicePeer(old.key())
	} else if old != nil && old.node.DiscoKey != n.DiscoKey {
		// Same key, new disco key: its old sessions are dead.
		c.engine.ResetDevicePeer(n.Key)
	}
	c.engine.SyncDevicePeer(n.Key)
	c.notePeersChanged()
	if old == nil && c.wasRemovedLocked(n.Key) {
		// The peer may still hold a WireGuard session with us that we
		// dropped in RemovePeer. It would send into it, unanswered, until
		// WireGuard gives up on it (up to 15 s); a packet from us starts a
		// fresh handshake instead.
		c.engine.Ping(p.addr, tailcfg.PingICMP, 0, func(*ipnstate.PingResult) {})
	}
	if old == nil {
		c.logger.Debug("peer added", "peer", id, "key", n.Key.ShortString(), "derp", n.PreferredDERP, "endpoints", len(n.Endpoints))
		// Ping a new peer at once, on every path it offers. Its own
		// pings, and its WireGuard handshake, may already be on their
		// way: without a pong from it, magicsock answers them only
		// through the relay, a round trip through the server that a
		// direct path does not need. With one, the direct path is
		// validated before the handshake needs an answer.
		c.engine.Ping(p.addr, tailcfg.PingDisco, 0, func(*ipnstate.PingResult) {})
	}
	return nil
}

// RemovePeer forgets a peer: its WireGuard session ends, its packets are
// dropped, and the connections it had with us are closed. It forgets a
// relay or relay client as well. Unknown IDs are ignored.
func (c *Conn) RemovePeer(id uuid.UUID) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	if c.isClosing() || c.removeRelayLocked(id) {
		return
	}
	table := c.peers.Load()
	old, ok := table.byID[id]
	if !ok {
		return
	}
	c.stopProbeLocked(id)
	c.peers.Store(table.without(id))
	c.setFilterLocked()
	c.magic.RemovePeer(old.view.ID())
	c.engine.SyncDevicePeer(old.key()) // removes it: the config source no longer knows it
	c.noteRemovedLocked(old.key())
	c.notePeersChanged()
	c.peerGoneLocked(old, ErrPeerLeft)
	c.logger.Debug("peer removed", "peer", id)
}

// sessionLifetime is how long a WireGuard session lasts without a new
// handshake (wireguard-go's RejectAfterTime).
const sessionLifetime = 180 * time.Second

// noteRemovedLocked remembers that the peer with key k was removed, for as
// long as it may keep its session with us. c.peerMu must be held.
func (c *Conn) noteRemovedLocked(k key.NodePublic) {
	now := time.Now()
	for rk, at := range c.removedAt {
		if now.Sub(at) > sessionLifetime {
			delete(c.removedAt, rk)
		}
	}
	if c.removedAt == nil {
		c.removedAt = make(map[key.NodePublic]time.Time)
	}
	c.removedAt[k] = now
}

// wasRemovedLocked reports whether the peer with key k was removed within a
// session lifetime, and forgets it. c.peerMu must be held.
func (c *Conn) wasRemovedLocked(k key.NodePublic) bool {
	at, ok := c.removedAt[k]
	delete(c.removedAt, k)
	return ok && time.Since(at) < sessionLifetime
}

// SetBlockEndpoints switches relay-only mode on or off (see
// Options.BlockEndpoints) for what happens from now on: whether our node
// publishes endpoints, and whether peers' endpoints are tried.
//
// Switching it on does not reliably end direct paths that are already up:
// magicsock keeps the addresses it learned at run time, on both sides, and
// keeps probing them. Tearing that down (new port, new magicsock endpoints,
// new WireGuard sessions) was tried and still raced with the peer's probes
// while costing a 5 s stall. For a Conn that never goes direct, set
// Options.BlockEndpoints when creating it.
func (c *Conn) SetBlockEndpoints(block bool) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	c.mu.Lock()
	changed := c.blockEndpoints != block
	c.blockEndpoints = block
	c.mu.Unlock()
	if !changed || c.isClosing() {
		return
	}
	table := c.peers.Load()
	next := table
	for _, p := range table.byID {
		np := *p
		np.view = tailcfgNode(p.view.ID(), p, block).View()
		c.magic.UpsertPeer(np.view)
		next = next.with(&np)
	}
	c.peers.Store(next)
	c.pokeNode()
}

// tailcfgNode is what magicsock needs of a peer: a non-zero ID and key, a
// disco key (without one it silently ignores the peer), the home DERP
// region, the endpoints to try, and the addresses WireGuard accepts from it.
func tailcfgNode(id tailcfg.NodeID, p *peer, blockEndpoints bool) *tailcfg.Node {
	n := &tailcfg.Node{
		ID:         id,
		StableID:   tailcfg.StableNodeID(p.id.String()),
		Name:       p.id.String(),
		Key:        p.node.Key,
		DiscoKey:   p.node.DiscoKey,
		Addresses:  []netip.Prefix{p.prefix},
		AllowedIPs: []netip.Prefix{p.prefix},
		HomeDERP:   p.node.PreferredDERP,
		Cap:        tailcfg.CurrentCapabilityVersion,
	}
	if !blockEndpoints {
		n.Endpoints = slices.Clone(p.node.Endpoints)
	}
	return n
}

// setFilterLocked installs a packet filter that admits new inbound flows
// only from the current peers' addresses to ours. Replies to our own flows
// and TCP segments of established connections pass regardless, as the
// filter tracks them. Relays and relay clients get their capability and no
// packet. Both the engine (packets) and magicsock (capabilities) get it.
// c.peerMu must be held.
func (c *Conn) setFilterLocked() {
	table := c.peers.Load()
	var srcs []netip.Prefix
	for _, p := range table.byID {
		srcs = append(srcs, p.prefix)
	}
	slices.SortFunc(srcs, netip.Prefix.Compare)
	c.filter = newFilter(c.prefix, srcs, relayCapMatches(c.prefix, table), c.filter, c.logf)
	c.engine.SetFilter(c.filter)
	c.magic.SetFilter(c.filter)
}

// newFilter returns a filter that admits new flows from srcs to self, and
// has the capability rules caps.
func newFilter(self netip.Prefix, srcs []netip.Prefix, caps []filter.Match, prev *filter.Filter, logf logger.Logf) *filter.Filter {
	var b netipx.IPSetBuilder
	b.AddPrefix(self)
	local, _ := b.IPSet()
	var matches []filter.Match
	if len(srcs) > 0 {
		matches = []filter.Match{{
			IPProto: views.SliceOf([]ipproto.Proto{ipproto.TCP, ipproto.UDP, ipproto.ICMPv6}),
			Srcs:    srcs,
			Dsts:    []filter.NetPortRange{{Net: self, Ports: filter.PortRange{First: 0, Last: 65535}}},
		}}
	}
	matches = append(matches, caps...)
	// Sharing state keeps the UDP reply tracking of flows already open.
	return filter.New(matches, nil, local, local, prev, logf)
}

// notePeersChanged wakes whoever waits for a peer to appear.
func (c *Conn) notePeersChanged() {
	c.mu.Lock()
	close(c.peersChanged)
	c.peersChanged = make(chan struct{})
	c.mu.Unlock()
}

// peerChangeCh returns a channel closed at the next peer change.
func (c *Conn) peerChangeCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peersChanged
}

// The engine's lookups, installed in New. They run on packet paths.

func (c *Conn) peerAllowedIPs(k key.NodePublic) ([]netip.Prefix, bool) {
	p, ok := c.peers.Load().byKey[k]
	if !ok {
		return nil, false
	}
	return []netip.Prefix{p.prefix}, true
}

func (c *Conn) peerKeyForIP(ip netip.Addr) (key.NodePublic, bool) {
	p, ok := c.peers.Load().byAddr[ip]
	if !ok {
		return key.NodePublic{}, false
	}
	return p.key(), true
}

func (c *Conn) peerForIP(ip netip.Addr) (wgengine.PeerForIP, bool) {
	if ip == c.addr {
		return wgengine.PeerForIP{Node: c.self, IsSelf: true, Route: c.prefix}, true
	}
	p, ok := c.peers.Load().byAddr[ip]
	if !ok {
		return wgengine.PeerForIP{}, false
	}
	return wgengine.PeerForIP{Node: p.view, Route: p.prefix}, true
}

func (c *Conn) lookupPeer(ip netip.Addr) (*peer, bool) {
	p, ok := c.peers.Load().byAddr[ip]
	return p, ok
}

// Peers returns the IDs of the upserted peers.
func (c *Conn) Peers() []uuid.UUID {
	return slices.Collect(maps.Keys(c.peers.Load().byID))
}

func cloneNode(n *tether.Node) *tether.Node {
	if n == nil {
		return nil
	}
	m := *n
	m.Addresses = slices.Clone(n.Addresses)
	m.Endpoints = slices.Clone(n.Endpoints)
	m.DERPLatency = maps.Clone(n.DERPLatency)
	return &m
}
