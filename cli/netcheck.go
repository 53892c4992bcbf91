package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/derpmap"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

// netcheckTimeout bounds waiting for the first network check.
const netcheckTimeout = 15 * time.Second

func (r *root) netcheckCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "netcheck",
		Short:   "Check UDP reachability, STUN, NAT behaviour and the latency to each DERP region",
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := r.client()
			if err != nil {
				return err
			}
			info, err := c.ConnectionInfo(ctx)
			if err != nil {
				return err
			}
			conn, err := tunnel.New(ctx, tunnel.Options{ID: uuid.New(), DERPMap: info.DERPMap, DERPPlainHTTP: c.URL.Scheme == "http", DERPForceWebSockets: info.DERPForceWebSockets})
			if err != nil {
				return fmt.Errorf("start tunnel: %w", err)
			}
			defer conn.Close()
			wctx, cancel := context.WithTimeout(ctx, netcheckTimeout)
			defer cancel()
			var st *tunnel.Status
			for {
				st = conn.Status(wctx)
				if st.Netcheck != nil {
					break
				}
				select {
				case <-wctx.Done():
					return fmt.Errorf("the network check did not finish within %s", netcheckTimeout)
				case <-time.After(100 * time.Millisecond):
				}
			}
			nc := st.Netcheck
			// Without STUN the check elects no region; the tunnel still
			// chose a home, which is what peers use.
			preferred := nc.PreferredDERP
			if preferred == 0 {
				preferred = st.HomeDERP
			}
			varies := nc.MappingVariesByDestIP
			if varies == "" && nc.UDP {
				varies = mappingVaries(probeMapping(ctx, info.DERPMap))
			}
			if format == "json" {
				return writeJSON(r.env.Stdout, netcheckOutput(info, st, preferred, varies))
			}
			writeNetcheck(r.env.Stdout, info, nc, preferred, varies)
			return nil
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

// writeNetcheck prints the network check nc on the deployment of info,
// with the home region preferred and the NAT mapping as varies says. It
// tells what the check could not measure apart from what failed: with no
// STUN server configured, or none answering, the check learns nothing of
// UDP, NAT or relay latency.
func writeNetcheck(w io.Writer, info tether.ConnectionInfo, nc *tunnel.Netcheck, preferred int, varies string) {
	stun := derpmap.STUNServers(info.DERPMap)
	fmt.Fprintln(w, "Network check:")
	switch {
	case len(stun) == 0:
		// UDP may work between peers that reach each other's local
		// addresses; the check cannot tell.
		fmt.Fprintln(w, "  UDP:                  unknown: the server configures no STUN server (--stun-addresses disable)")
	case !nc.UDP:
		who := "the STUN server did not answer"
		if len(stun) > 1 {
			who = fmt.Sprintf("none of the %d STUN servers answered", len(stun))
		}
		fmt.Fprintf(w, "  UDP:                  no: %s; UDP is blocked on this network, or STUN is down\n", who)
	default:
		fmt.Fprintln(w, "  UDP:                  yes")
	}
	family := func(name string, ok bool, global netip.AddrPort) {
		switch {
		case !nc.UDP:
			fmt.Fprintf(w, "  %-21s unknown: no STUN answer\n", name+":")
		case global.IsValid():
			fmt.Fprintf(w, "  %-21s %s, STUN sees %s\n", name+":", yesNo(ok), global)
		default:
			fmt.Fprintf(w, "  %-21s %s\n", name+":", yesNo(ok))
		}
	}
	family("IPv4", nc.IPv4, nc.GlobalV4)
	family("IPv6", nc.IPv6, nc.GlobalV6)
	var mapping string
	switch {
	case varies == "true":
		mapping = "yes: hard NAT, direct connections are unlikely"
	case varies == "false":
		mapping = "no: easy NAT or none"
	case len(stun) == 0:
		mapping = "unknown: no STUN servers"
	case !nc.UDP:
		mapping = "unknown: no STUN server answered"
	case len(stunServers(info.DERPMap)) < 2:
		mapping = "unknown (needs two STUN servers at different addresses)"
	default:
		mapping = "unknown: fewer than two STUN servers answered"
	}
	fmt.Fprintf(w, "  Mapping varies by destination: %s\n", mapping)
	fmt.Fprintf(w, "  Preferred DERP:       %s\n", regionCode(info.DERPMap.Regions, preferred))
	if info.DisableDirect {
		fmt.Fprintln(w, "  Direct connections:   blocked by the server")
	}
	fmt.Fprintln(w, "  DERP latency:")
	measured := map[int]bool{} // regions with a STUN server to measure by
	for _, s := range stun {
		measured[s.RegionID] = true
	}
	ids := make([]int, 0, len(info.DERPMap.Regions))
	for id := range info.DERPMap.Regions {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		reg := info.DERPMap.Regions[id]
		var lat string
		if d, ok := nc.DERPLatency[id]; ok {
			lat = roundLatency(d).String()
		} else if !measured[id] {
			lat = "not measured (the region has no STUN server)"
		} else if !nc.UDP {
			lat = "not measured (no STUN answer)"
		} else {
			lat = "no answer from its STUN server"
		}
		fmt.Fprintf(w, "    %-10s %-24s %s\n", reg.RegionCode, reg.RegionName, lat)
	}
}

// netcheckOutput is what `tether netcheck --output json` prints: the
// tunnel's status st (with its network check) on the deployment of info,
// with the home region preferred and the NAT mapping as varies says.
func netcheckOutput(info tether.ConnectionInfo, st *tunnel.Status, preferred int, varies string) tether.NetcheckOutput {
	nc := st.Netcheck
	latency := map[string]float64{}
	for id, d := range nc.DERPLatency {
		latency[regionCode(info.DERPMap.Regions, id)] = float64(d.Microseconds()) / 1000
	}
	return tether.NetcheckOutput{
		UDP:                   nc.UDP,
		IPv4:                  nc.IPv4,
		IPv6:                  nc.IPv6,
		GlobalV4:              addrOrEmpty(nc.GlobalV4.String(), nc.GlobalV4.IsValid()),
		GlobalV6:              addrOrEmpty(nc.GlobalV6.String(), nc.GlobalV6.IsValid()),
		MappingVariesByDestIP: varies,
		PreferredDERP:         regionCode(info.DERPMap.Regions, preferred),
		DERPLatencyMS:         latency,
		Endpoints:             st.Endpoints,
		DirectBlocked:         info.DisableDirect,
		STUNConfigured:        hasSTUN(info.DERPMap),
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func addrOrEmpty(s string, ok bool) string {
	if !ok {
		return ""
	}
	return s
}

// regionCode names a DERP region by its code.
func regionCode(regions map[int]*tailcfg.DERPRegion, id int) string {
	if r, ok := regions[id]; ok {
		return r.RegionCode
	}
	if id == 0 {
		return "none"
	}
	return fmt.Sprintf("region %d", id)
}
