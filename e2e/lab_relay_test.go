package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/natlab"
)

func TestLabRelayed(t *testing.T) {
	tests := []struct {
		name        string
		agent       natlab.RouterKind
		client      natlab.RouterKind
		explanation []string // what the text ping must say about why
		// What the client's netcheck must find.
		udp     bool
		mapping string // mapping_varies_by_dest_ip
	}{
		{"hard NAT to hard NAT", natlab.HardNAT, natlab.HardNAT, []string{"behind a hard NAT", "STUN servers saw"}, true, "true"},
		{"client UDP blocked", natlab.EasyNAT, natlab.UDPBlocked, []string{"UDP is blocked on this network"}, false, ""},
		// The client cannot tell what the workspace's network does.
		{"workspace UDP blocked", natlab.UDPBlocked, natlab.EasyNAT, []string{"a firewall may block UDP on either side"}, true, "false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two STUN servers at different addresses, so that netcheck can
			// tell a hard NAT from an easy one.
			lab, serverH := newLab(t, true)
			stun := []netip.Addr{serverH.IP(), secondIP(serverH)}
			srv := startLabServer(t, serverH, stun, "--stun-addresses",
				netip.AddrPortFrom(stun[0], labSTUNPort).String()+","+netip.AddrPortFrom(stun[1], labSTUNPort).String())
			ws := startLabWorkspace(t, lab, srv, lab.AddHost("agent", tt.agent), lab.AddHost("client", tt.client))
			u := ws.User

			pongs := pings(t, u, "-n", "10", "--interval", "200ms")
			for _, p := range pongs {
				if p.Path != "derp" || p.DERPRegion != "tether" {
					t.Errorf("pong %+v, want all through DERP region tether; all: %+v", p, pongs)
					break
				}
			}
			out := u.Must("ping", "dev", "-n", "3", "--interval", "200ms")
			t.Logf("text ping:\n%s", out)
			for _, want := range tt.explanation {
				if !strings.Contains(out, want) {
					t.Errorf("text ping does not say %q to explain the relay:\n%s", want, out)
				}
			}
			var nc struct {
				UDP     bool   `json:"udp"`
				Mapping string `json:"mapping_varies_by_dest_ip"`
			}
			out = u.Must("netcheck", "--output", "json")
			if err := json.Unmarshal([]byte(out), &nc); err != nil || nc.UDP != tt.udp || nc.Mapping != tt.mapping {
				t.Errorf("netcheck found udp %v, mapping varies %q (%v), want %v and %q:\n%s", nc.UDP, nc.Mapping, err, tt.udp, tt.mapping, out)
			}

			checkTransfer(t, u, 2<<20)
		})
	}
}
