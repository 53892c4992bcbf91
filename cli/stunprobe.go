package cli

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether/derpmap"
)

// magicsock's netcheck cannot tell a hard NAT (a new public port for each
// destination) when the STUN servers share a DERP region, as those of
// --stun-addresses do: the first answer in a region cancels the region's
// other probes, so it never compares two answers. probeMapping asks every
// STUN server itself, from one socket, and compares.

// Timing of probeMapping: requests are resent while unanswered, in case of
// loss, until the timeout.
const (
	mappingProbeTimeout = time.Second
	mappingProbeResend  = 250 * time.Millisecond
)

// stunServers returns the distinct IPv4 STUN servers of a DERP map that are
// given as IP addresses (names would need DNS lookups, which a diagnosis
// should not wait for).
func stunServers(dm *tailcfg.DERPMap) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range derpmap.STUNServers(dm) {
		if s.IPv4.IsValid() {
			out = append(out, netip.AddrPortFrom(s.IPv4, s.Port))
		}
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}

// hasSTUN reports whether the DERP map has any STUN server.
func hasSTUN(dm *tailcfg.DERPMap) bool { return len(derpmap.STUNServers(dm)) > 0 }

// probeMapping asks each STUN server of the DERP map which address it sees
// us at, from one UDP socket, and returns the answers by server. It needs
// two servers; with fewer answers than two, it cannot tell anything.
func probeMapping(ctx context.Context, dm *tailcfg.DERPMap) map[netip.AddrPort]netip.AddrPort {
	servers := stunServers(dm)
	if len(servers) < 2 {
		return nil
	}
	pc, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return nil
	}
	defer pc.Close()
	deadline := time.Now().Add(mappingProbeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	txs := make(map[stun.TxID]netip.AddrPort)
	seen := make(map[netip.AddrPort]netip.AddrPort)
	buf := make([]byte, 1500)
	for time.Now().Before(deadline) && ctx.Err() == nil && len(seen) < len(servers) {
		for _, s := range servers {
			if _, ok := seen[s]; !ok {
				tx := stun.NewTxID()
				txs[tx] = s
				pc.WriteToUDPAddrPort(stun.Request(tx), s)
			}
		}
		wait := time.Now().Add(mappingProbeResend)
		if wait.After(deadline) {
			wait = deadline
		}
		pc.SetReadDeadline(wait)
		for len(seen) < len(servers) {
			n, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				break // the resend interval passed
			}
			tx, addr, err := stun.ParseResponse(buf[:n])
			if s, ok := txs[tx]; ok && err == nil {
				seen[s] = addr
			}
		}
	}
	return seen
}

// mappingVaries reads probeMapping's answers as netcheck's
// MappingVariesByDestIP: "true" when servers saw different addresses,
// "false" when they agree, "" with fewer than two answers.
func mappingVaries(seen map[netip.AddrPort]netip.AddrPort) string {
	if len(seen) < 2 {
		return ""
	}
	var first netip.AddrPort
	for _, a := range seen {
		if !first.IsValid() {
			first = a
		} else if a != first {
			return "true"
		}
	}
	return "false"
}
