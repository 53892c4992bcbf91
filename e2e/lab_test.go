package e2e

// End-to-end tests across NATs: the real server, agent and CLI, each in a
// network namespace of natlab's small internet.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// checkTransfer moves size bytes each way through `tether ssh` and checks
// that they arrive intact.
func checkTransfer(t *testing.T, u *harness.User, size int) {
	t.Helper()
	up := make([]byte, size)
	rand.Read(up)
	sum := sha256.Sum256(up)
	out := u.MustInput(string(up), "ssh", "dev", "--", "sha256sum")
	if got, _, _ := strings.Cut(out, " "); got != hex.EncodeToString(sum[:]) {
		t.Errorf("upload of %d bytes: the workspace computed sha256 %q, want %x", size, out, sum)
	}
	down := u.Must("ssh", "dev", "--", "head -c "+strconv.Itoa(size)+" /dev/zero")
	if len(down) != size || strings.Count(down, "\x00") != size {
		t.Errorf("download: %d bytes, want %d zero bytes", len(down), size)
	}
}

// directPongs is how many direct pongs in a row count as "the path is
// direct now".
const directPongs = 3

// maxTimeToDirect bounds the time from the first pong to the first direct
// one where a direct path exists. Both sides punch at once when data (or
// tether ping's probe packet) asks for it; without that, magicsock's next
// heartbeat, 3 s later, would.
const maxTimeToDirect = 2 * time.Second

func TestLabDirect(t *testing.T) {
	tests := []struct {
		name string
		// hosts adds the agent's and the client's hosts to the lab.
		hosts func(lab *natlab.Lab) (agent, client *natlab.Host)
		// endpoint is the address the client must reach the agent at.
		endpoint func(agent *natlab.Host) netip.Addr
	}{
		{
			name: "same LAN",
			hosts: func(lab *natlab.Lab) (*natlab.Host, *natlab.Host) {
				a := lab.AddHost("agent", natlab.EasyNAT)
				return a, lab.AddLANHost("client", a)
			},
			endpoint: (*natlab.Host).IP,
		},
		{
			name: "public to easy NAT",
			hosts: func(lab *natlab.Lab) (*natlab.Host, *natlab.Host) {
				return lab.AddHost("agent", natlab.Public), lab.AddHost("client", natlab.EasyNAT)
			},
			endpoint: (*natlab.Host).PublicIP,
		},
		{
			name: "public to hard NAT",
			hosts: func(lab *natlab.Lab) (*natlab.Host, *natlab.Host) {
				return lab.AddHost("agent", natlab.Public), lab.AddHost("client", natlab.HardNAT)
			},
			endpoint: (*natlab.Host).PublicIP,
		},
		{
			name: "easy NAT to easy NAT",
			hosts: func(lab *natlab.Lab) (*natlab.Host, *natlab.Host) {
				return lab.AddHost("agent", natlab.EasyNAT), lab.AddHost("client", natlab.EasyNAT)
			},
			endpoint: (*natlab.Host).PublicIP,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab, serverH := newLab(t, false)
			srv := startLabServer(t, serverH, nil)
			agentH, clientH := tt.hosts(lab)
			ws := startLabWorkspace(t, lab, srv, agentH, clientH)
			u := ws.User

			took, pongs := timeToDirect(t, u, directPongs, directTimeout)
			last := pongs[len(pongs)-1]
			ep, err := netip.ParseAddrPort(last.Endpoint)
			if want := tt.endpoint(agentH); err != nil || ep.Addr() != want {
				t.Errorf("direct pongs come from %q, want the agent at %s", last.Endpoint, want)
			}
			t.Logf("FIGURE %s: direct %s after the first pong (%d pongs, first path %s)", tt.name, took.Round(time.Millisecond), len(pongs), pongs[0].Path)
			if took > maxTimeToDirect {
				t.Errorf("the path became direct %s after the first pong, want within %s: %+v", took, maxTimeToDirect, pongs)
			}

			checkTransfer(t, u, 4<<20)
		})
	}
}
