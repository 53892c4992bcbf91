package cli

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

func TestWriteNetcheck(t *testing.T) {
	region := func(id int, code string, stunPort int, ip string) *tailcfg.DERPRegion {
		return &tailcfg.DERPRegion{RegionID: id, RegionCode: code, RegionName: code,
			Nodes: []*tailcfg.DERPNode{{Name: code, RegionID: id, HostName: "relay.example", IPv4: ip, STUNPort: stunPort}}}
	}
	withSTUN := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: region(1, "near", 3478, "192.0.2.1"), 2: region(2, "far", 3478, "192.0.2.2"), 3: region(3, "nostun", -1, "192.0.2.3")}}
	noSTUN := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{3: region(3, "nostun", -1, "192.0.2.3")}}
	tests := []struct {
		name    string
		dm      *tailcfg.DERPMap
		nc      tunnel.Netcheck
		varies  string
		want    []string
		notWant []string
	}{
		{"STUN configured, none answered", withSTUN, tunnel.Netcheck{}, "", []string{
			"UDP:                  no: none of the 2 STUN servers answered",
			"IPv4:                 unknown: no STUN answer",
			"Mapping varies by destination: unknown: no STUN server answered",
			"near       near                     not measured (no STUN answer)",
			"nostun     nostun                   not measured (the region has no STUN server)",
		}, []string{"unreachable", "needs two STUN servers"}},
		{"no STUN at all", noSTUN, tunnel.Netcheck{}, "", []string{
			"UDP:                  unknown: the server configures no STUN server",
			"Mapping varies by destination: unknown: no STUN servers",
			"not measured (the region has no STUN server)",
		}, []string{"unreachable"}},
		{"answered", withSTUN, tunnel.Netcheck{UDP: true, IPv4: true, GlobalV4: netip.MustParseAddrPort("198.51.100.7:41641"),
			DERPLatency: map[int]time.Duration{1: 12 * time.Millisecond}}, "false", []string{
			"UDP:                  yes",
			"IPv4:                 yes, STUN sees 198.51.100.7:41641",
			"IPv6:                 no",
			"Mapping varies by destination: no: easy NAT or none",
			"near       near                     12ms",
			"far        far                      no answer from its STUN server",
		}, []string{"unreachable", "not measured (no STUN answer)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeNetcheck(&b, tether.ConnectionInfo{DERPMap: tc.dm}, &tc.nc, 1, tc.varies)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("no %q in:\n%s", w, b.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(b.String(), w) {
					t.Errorf("%q in:\n%s", w, b.String())
				}
			}
		})
	}
}
