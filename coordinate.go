package tether

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// The coordination protocol introduces peers to each other.
//
// Every peer (a workspace agent, a user's CLI, the server's own web proxy)
// keeps one WebSocket to the server and sends CoordinateRequests carrying its
// Node: its keys, tunnel addresses, home DERP region and the endpoints where
// it may be reachable directly. The server answers with CoordinateResponses
// carrying the nodes of the peers this peer is allowed to reach, and tells it
// when one of them goes away. Nodes travel only along authorized edges: a
// client and the agent of one workspace that the client's user may reach.
//
// Each WebSocket message is one JSON object of at most MaxCoordinateMessage
// bytes. A peer that sends anything malformed is disconnected with a close
// reason that says what was wrong.
//
// Version history (CoordinateProtocolVersion, sent by clients as the
// "version" query parameter; the server refuses versions it does not know):
//
//	1.0 (2026-11-25): nodes, peer updates (node, disconnected), DERP map pushes.
//	1.0 (2026-12-04): the server may close a client's socket with
//	    CloseAccessRevoked (older clients retry, and are refused with 401).
//	1.1 (2026-12-10): UDP relays (PeerUpdate.Relay). The server introduces
//	    the deployment's UDP relays only to peers that speak 1.1, since a
//	    1.0 peer would take a relay for an ordinary peer and let it in.
//	    Clients send their version as "version"; agents, whose "version"
//	    is the product's, send it as "coordinate_version" (none means 1.0).
const CoordinateProtocolVersion = "1.1"

// CoordinateProtocolVersions are the versions the server accepts, oldest
// first.
var CoordinateProtocolVersions = []string{"1.0", CoordinateProtocolVersion}

// CoordinateRelays reports whether a peer that speaks version v of the
// coordination protocol is introduced to UDP relays.
func CoordinateRelays(v string) bool { return v != "" && v != "1.0" }

// CloseAccessRevoked is the WebSocket close status with which the server
// ends a user's coordination or web terminal socket when it takes their
// access away: the account was suspended or deleted, its sessions were
// signed out, or its role no longer lets it reach the workspace. The close
// reason says which, for people. Its counterparts hear PeerDisconnected,
// so agents drop the client's tunnel at once. A client that gets it must
// not reconnect: its credentials no longer work.
const CloseAccessRevoked = 4403

// MaxCoordinateMessage is the largest coordination message either side
// accepts, in bytes. A node with every allowed endpoint fits many times over.
const MaxCoordinateMessage = 64 << 10

// Limits on a Node's lists, so that a misbehaving peer cannot make the server
// hold or forward unbounded state.
const (
	MaxNodeAddresses   = 4
	MaxNodeEndpoints   = 64
	MaxNodeDERPRegions = 128
)

// TunnelPrefix holds every tunnel address. Each peer's single address is
// derived from its ID (TunnelIP), so the coordinator can check that a peer
// claims only its own address, and a client knows an agent's address before
// the agent's node arrives.
var TunnelPrefix = netip.MustParsePrefix("fd7a:115c:a1e0::/48")

// TunnelIP returns the tunnel address of the peer with the given ID: the
// TunnelPrefix followed by the first 10 bytes of the ID.
func TunnelIP(id uuid.UUID) netip.Addr {
	var a [16]byte
	p := TunnelPrefix.Addr().As16()
	copy(a[:6], p[:6])
	copy(a[6:], id[:10])
	return netip.AddrFrom16(a)
}

// Fixed ports that an agent serves on its tunnel address. Any other TCP or
// UDP port is forwarded to the same port on the workspace's loopback.
const (
	AgentSSHPort       = 1 // SSH (exec, PTY, SFTP, forwarding)
	AgentPTYPort       = 2 // reconnecting PTY for the web terminal
	AgentSpeedtestPort = 3 // throughput test
	// AgentTerminalPort serves the reconnecting PTY with output positions
	// (package ptyproto), so that the web terminal can move between the
	// server's relay and a direct path without losing output.
	AgentTerminalPort = 4
	// AgentRTCPort takes the web terminal's WebRTC signalling, forwarded
	// by the server from the browser (package rtcsignal).
	AgentRTCPort = 5
	// AgentExecPort runs commands and shells for `tether ssh` without
	// SSH's handshake (package execproto). Older agents forward it to the
	// workspace's loopback, where nothing answers: the CLI then uses SSH.
	AgentExecPort = 6
)

// Node is what a peer tells others about itself so that they can reach it.
type Node struct {
	// Key is the WireGuard public key. The private half never leaves the peer.
	Key key.NodePublic `json:"key"`
	// DiscoKey authenticates magicsock's path-discovery messages.
	DiscoKey key.DiscoPublic `json:"disco_key"`
	// Addresses are the peer's tunnel addresses (one /128: TunnelIP(ID)).
	Addresses []netip.Prefix `json:"addresses"`
	// PreferredDERP is the ID of the peer's home DERP region, where others
	// send it relayed packets; 0 while it has none yet.
	PreferredDERP int `json:"preferred_derp"`
	// DERPLatency is the peer's last measured latency to each region, in
	// seconds, keyed by region ID. For diagnosis only.
	DERPLatency map[string]float64 `json:"derp_latency,omitempty"`
	// Endpoints are the UDP addresses where the peer may be reachable
	// directly: its local interfaces and what STUN saw. Empty when direct
	// connections are blocked.
	Endpoints []netip.AddrPort `json:"endpoints,omitempty"`
	// AsOf is when the peer produced this node.
	AsOf time.Time `json:"as_of"`
}

// Validate reports whether n is well-formed and claims only the tunnel
// address of the peer with the given ID.
func (n *Node) Validate(id uuid.UUID) error {
	switch {
	case n == nil:
		return fmt.Errorf("node is missing")
	case n.Key.IsZero():
		return fmt.Errorf("node key is missing")
	case n.DiscoKey.IsZero():
		return fmt.Errorf("disco key is missing")
	case len(n.Addresses) == 0 || len(n.Addresses) > MaxNodeAddresses:
		return fmt.Errorf("node must have 1 to %d addresses, has %d", MaxNodeAddresses, len(n.Addresses))
	case len(n.Endpoints) > MaxNodeEndpoints:
		return fmt.Errorf("node has %d endpoints, more than %d", len(n.Endpoints), MaxNodeEndpoints)
	case len(n.DERPLatency) > MaxNodeDERPRegions:
		return fmt.Errorf("node has latencies for %d regions, more than %d", len(n.DERPLatency), MaxNodeDERPRegions)
	case n.PreferredDERP < 0:
		return fmt.Errorf("preferred DERP region %d is negative", n.PreferredDERP)
	}
	for k := range n.DERPLatency {
		if len(k) > 32 {
			return fmt.Errorf("DERP latency key %.40q is longer than 32 bytes", k)
		}
	}
	want := netip.PrefixFrom(TunnelIP(id), 128)
	for _, a := range n.Addresses {
		if a != want {
			return fmt.Errorf("address %s is not this peer's tunnel address %s", a, want)
		}
	}
	return nil
}

// CoordinateRequest is a message from a peer to the coordinator.
type CoordinateRequest struct {
	// Node, when set, replaces the sender's previous node.
	Node *Node `json:"node,omitempty"`
	// Disconnect says the peer is leaving on purpose: the coordinator tells
	// its peers "disconnected" rather than "lost".
	Disconnect bool `json:"disconnect,omitempty"`
}

// PeerUpdateKind says what happened to a peer.
type PeerUpdateKind string

const (
	PeerNode         PeerUpdateKind = "node"         // the peer's node is new or changed
	PeerDisconnected PeerUpdateKind = "disconnected" // the peer left on purpose
	PeerLost         PeerUpdateKind = "lost"         // the peer's connection broke; it may come back
)

// PeerUpdate is news about one peer.
type PeerUpdate struct {
	ID     uuid.UUID      `json:"id"`
	Kind   PeerUpdateKind `json:"kind"`
	Node   *Node          `json:"node,omitempty"`   // with PeerNode
	Reason string         `json:"reason,omitempty"` // with PeerDisconnected, PeerLost
	// Relay, with PeerNode, says the peer is one of the deployment's UDP
	// relays (protocol 1.1), not a peer to talk to. A UDP relay forwards
	// the WireGuard packets of two peers that cannot reach each other
	// directly (Tailscale's peer relays): each asks it, through DERP, to
	// allocate an endpoint for the pair, and both then send their
	// (end-to-end encrypted) packets to it over UDP. A peer makes a relay
	// a candidate for its paths, and nothing else: no WireGuard session
	// with it, no packet from it accepted, no connection to it.
	Relay bool `json:"relay,omitempty"`
	// Agent, in updates sent to a relay, is the agent of the workspace the
	// peer belongs to: the peer itself for an agent, the agent a client is
	// bound to. A relay forwards only between a client and its agent.
	Agent uuid.UUID `json:"agent,omitzero"`
}

// CoordinateResponse is a message from the coordinator to a peer.
type CoordinateResponse struct {
	Peers []PeerUpdate `json:"peers,omitempty"`
	// DERPMap, when set, replaces the DERP map the peer uses (for example
	// when a workspace proxy adds its region).
	DERPMap *tailcfg.DERPMap `json:"derp_map,omitempty"`
}
