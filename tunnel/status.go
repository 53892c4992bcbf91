package tunnel

import (
	"bytes"
	"context"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/types/key"
)

// Status describes the Conn and its peers, for `tether list`, `tether
// netcheck` and the dashboard.
type Status struct {
	Addr netip.Addr
	Key  key.NodePublic
	// HomeDERP is the region where peers reach us through a relay (0 while
	// unknown), HomeDERPCode its code.
	HomeDERP     int
	HomeDERPCode string
	// DERPConns is the number of relay connections open now.
	DERPConns int
	// Endpoints are the UDP addresses we publish (none when blocked).
	Endpoints      []netip.AddrPort
	BlockEndpoints bool
	// Netcheck is the last network check; nil before the first one ends.
	Netcheck *Netcheck
	Peers    []PeerStatus // sorted by ID
}

// Netcheck is what the last network check found.
type Netcheck struct {
	At   time.Time
	UDP  bool // a STUN server answered
	IPv4 bool // an IPv4 STUN round trip worked
	IPv6 bool // an IPv6 STUN round trip worked
	// GlobalV4 and GlobalV6 are our addresses as STUN saw them.
	GlobalV4, GlobalV6 netip.AddrPort
	// MappingVariesByDestIP is "true" behind a hard NAT (different public
	// ports towards different servers); "" when unknown (it takes two STUN
	// servers at different addresses to tell).
	MappingVariesByDestIP string
	PreferredDERP         int
	// DERPLatency is the latency to each region, by region ID.
	DERPLatency map[int]time.Duration
}

// PeerStatus describes one peer.
type PeerStatus struct {
	ID   uuid.UUID
	Addr netip.Addr
	Key  key.NodePublic
	// Direct is true when packets go straight to Endpoint; UDPRelay when
	// they go through the UDP relay at Endpoint; otherwise they go through
	// the DERP relay of DERPRegionID (the peer's home region). It
	// describes the path of what we last sent: before any traffic, or after
	// a long idle time, it says DERP.
	Direct         bool
	UDPRelay       bool
	Endpoint       string
	DERPRegionID   int
	DERPRegionCode string
	// Active is true when we sent it something in the last few minutes.
	Active        bool
	LastWrite     time.Time
	LastHandshake time.Time // zero if WireGuard never completed one
	RxBytes       int64
	TxBytes       int64
}

// Status returns a snapshot of the Conn's state.
func (c *Conn) Status(ctx context.Context) *Status {
	sb := &ipnstate.StatusBuilder{WantPeers: true}
	c.engine.UpdateStatus(sb)
	st := sb.Status()

	c.mu.Lock()
	s := &Status{
		Addr:           c.addr,
		Key:            c.key.Public(),
		HomeDERP:       c.homeDERP,
		BlockEndpoints: c.blockEndpoints,
	}
	if n := c.nodeLocked(); n != nil {
		s.Endpoints = n.Endpoints
	}
	dm := c.derpMap
	c.mu.Unlock()
	if r, ok := dm.Regions[s.HomeDERP]; ok {
		s.HomeDERPCode = r.RegionCode
	}

	if r := c.magic.GetLastNetcheckReport(ctx); r != nil {
		s.Netcheck = &Netcheck{
			At:                    r.Now,
			UDP:                   r.UDP,
			IPv4:                  r.IPv4,
			IPv6:                  r.IPv6,
			GlobalV4:              r.GlobalV4,
			GlobalV6:              r.GlobalV6,
			MappingVariesByDestIP: string(r.MappingVariesByDestIP),
			PreferredDERP:         r.PreferredDERP,
			DERPLatency:           maps.Clone(r.RegionLatency),
		}
	}
	s.DERPConns = c.magic.DERPs()

	table := c.peers.Load()
	for _, p := range table.byID {
		ps := PeerStatus{ID: p.id, Addr: p.addr, Key: p.key()}
		if es, ok := st.Peer[p.key()]; ok {
			ps.Active = es.Active
			ps.LastWrite = es.LastWrite
			ps.LastHandshake = es.LastHandshake
			ps.RxBytes = es.RxBytes
			ps.TxBytes = es.TxBytes
			switch {
			case es.CurAddr != "":
				ps.Direct = true
				ps.Endpoint = es.CurAddr
			case es.PeerRelay != "":
				ps.UDPRelay = true
				ps.Endpoint = relayAddr(es.PeerRelay)
			}
		}
		if !ps.Direct && !ps.UDPRelay {
			// Relayed packets go to the peer's home region.
			ps.DERPRegionID = p.node.PreferredDERP
			if r, ok := dm.Regions[ps.DERPRegionID]; ok {
				ps.DERPRegionCode = r.RegionCode
			}
		}
		s.Peers = append(s.Peers, ps)
	}
	slices.SortFunc(s.Peers, func(a, b PeerStatus) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return s
}
