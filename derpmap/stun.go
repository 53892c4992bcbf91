package derpmap

import (
	"cmp"
	"net"
	"net/netip"
	"strconv"

	"tailscale.com/tailcfg"
)

// defaultSTUNPort is the port of a node whose STUNPort is 0.
const defaultSTUNPort = 3478

// STUNServer is a node of a DERP map that serves STUN, and where requests
// to it go.
type STUNServer struct {
	RegionID   int
	RegionCode string
	Node       string // the node's name
	Port       uint16
	// IPv4 and IPv6 are the server's addresses that the map gives without
	// DNS: the node's STUNTestIP, else its IPv4 or IPv6 field, or its host
	// name when that field is empty and the name is an IP literal. Each is
	// invalid when the map turns that family off ("none", or any other
	// non-address) or leaves it to a lookup of HostName.
	IPv4, IPv6 netip.Addr
	// HostName is the node's host name when some family is left to a DNS
	// lookup of it, "" otherwise.
	HostName string
}

// Addr returns where to send a request to s as host:port: its IPv4
// address, else its IPv6 address, else its host name.
func (s STUNServer) Addr() string {
	host := s.HostName
	switch {
	case s.IPv4.IsValid():
		host = s.IPv4.String()
	case s.IPv6.IsValid():
		host = s.IPv6.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(s.Port)))
}

// STUNServers returns the STUN servers of m, by region ID and then in the
// order of the region's nodes. It reads the map as the peers' network
// check (the library's netcheck) does, so that diagnoses probe what peers
// probe: a node serves STUN unless its STUNPort is negative (0 means
// 3478), and a node with no address in either family is left out. A nil
// map has none.
func STUNServers(m *tailcfg.DERPMap) []STUNServer {
	if m == nil {
		return nil
	}
	var out []STUNServer
	for _, id := range m.RegionIDs() {
		r := m.Regions[id]
		for _, n := range r.Nodes {
			if n.STUNPort < 0 || n.STUNPort > 65535 {
				continue
			}
			s := STUNServer{RegionID: id, RegionCode: r.RegionCode, Node: n.Name, Port: uint16(cmp.Or(n.STUNPort, defaultSTUNPort))}
			if n.STUNTestIP != "" {
				// It replaces the node's addresses for STUN, in its
				// family only; an unparsable one turns STUN off.
				ip, err := netip.ParseAddr(n.STUNTestIP)
				switch {
				case err != nil:
				case ip.Is4():
					s.IPv4 = ip
				default:
					s.IPv6 = ip
				}
			} else {
				var lookup4, lookup6 bool
				s.IPv4, lookup4 = familyAddr(n.IPv4, n.HostName, netip.Addr.Is4)
				s.IPv6, lookup6 = familyAddr(n.IPv6, n.HostName, netip.Addr.Is6)
				if lookup4 || lookup6 {
					s.HostName = n.HostName
				}
			}
			if s.IPv4.IsValid() || s.IPv6.IsValid() || s.HostName != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// familyAddr reads a node's address in one family: field (the node's IPv4
// or IPv6) when set, which is an address of that family or turns the
// family off; else host, an IP literal or a name to look up.
func familyAddr(field, host string, inFamily func(netip.Addr) bool) (_ netip.Addr, lookup bool) {
	if field == "" {
		field = host
		if _, err := netip.ParseAddr(host); err != nil {
			return netip.Addr{}, host != ""
		}
	}
	ip, err := netip.ParseAddr(field)
	if err != nil || !inFamily(ip) {
		return netip.Addr{}, false
	}
	return ip, false
}
