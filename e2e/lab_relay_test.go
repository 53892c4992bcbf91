package e2e

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/natlab"
)

// relayTimeout bounds waiting for a path to move to the UDP relay. The
// first allocation completes within ~100 ms of the first data. A magicsock
// that rebinds its socket right after start (its first network check
// reports a send error; seen in the lab) forgets the relay path, and
// would look for one again only 30 s after its first search; the tunnel
// renews its peers after a rebind so that it looks at once
// (tunnel.renewRelayedPeers). The bound stays generous for loaded machines.
const relayTimeout = 45 * time.Second

// TestLabRelayed checks the paths that cannot go direct: where UDP reaches
// the server (hard NATs), through the server's UDP relay; where it does not,
// through DERP. The text ping explains each.
func TestLabRelayed(t *testing.T) {
	tests := []struct {
		name        string
		agent       natlab.RouterKind
		client      natlab.RouterKind
		path        string   // the path pongs settle on
		explanation []string // what the text ping must say about why
		// What the client's netcheck must find.
		udp     bool
		mapping string // mapping_varies_by_dest_ip
	}{
		{"hard NAT to hard NAT", natlab.HardNAT, natlab.HardNAT, "relay", []string{"behind a hard NAT", "STUN servers saw"}, true, "true"},
		{"easy NAT to hard NAT", natlab.EasyNAT, natlab.HardNAT, "relay", []string{"behind a hard NAT"}, true, "true"},
		{"client UDP blocked", natlab.EasyNAT, natlab.UDPBlocked, "derp", []string{"DERP", "UDP is blocked on this network"}, false, ""},
		// The client cannot tell what the workspace's network does.
		{"workspace UDP blocked", natlab.UDPBlocked, natlab.EasyNAT, "derp", []string{"DERP", "a firewall may block UDP on either side"}, true, "false"},
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

			wantRelay := netip.AddrPortFrom(serverH.IP(), labUDPRelayPort).String()
			took, pongs := timeToPath(t, u, tt.path, 3, relayTimeout)
			t.Logf("FIGURE %s: %s %s after the first pong (first path %s)", tt.name, tt.path, took.Round(time.Millisecond), pongs[0].Path)
			for _, p := range pongs {
				switch {
				case p.Path == "direct":
					t.Fatalf("a pong came directly where no direct path exists: %+v", pongs)
				case tt.path == "derp" && p.Path != "derp":
					t.Fatalf("a pong took %s where UDP cannot reach the server: %+v", p.Path, pongs)
				case p.Path == "relay" && p.Endpoint != wantRelay:
					t.Errorf("relayed pong %+v, want it through %s", p, wantRelay)
				case p.Path == "derp" && p.DERPRegion != "tether":
					t.Errorf("pong %+v, want DERP region tether", p)
				}
			}
			out := u.Must("ping", "dev", "-n", "3", "--interval", "200ms")
			t.Logf("text ping:\n%s", out)
			// A fresh CLI is usually on the relay within its first pongs,
			// but its first may come over DERP (and after a rebind at
			// start, a few more). Either way it must name the path it is on.
			if tt.path == "relay" && strings.Contains(out, "via relay") &&
				!strings.Contains(out, "via relay "+wantRelay) {
				t.Errorf("text ping names another relay than %s:\n%s", wantRelay, out)
			}
			if strings.Contains(out, "still relayed through the server's UDP relay") &&
				!strings.Contains(out, "UDP relay ("+wantRelay+")") {
				t.Errorf("text ping does not name the relay %s:\n%s", wantRelay, out)
			}
			for _, want := range tt.explanation {
				if !strings.Contains(out, want) {
					t.Errorf("text ping does not say %q to explain the path:\n%s", want, out)
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
