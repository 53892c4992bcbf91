package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// TestWorkspaceProxyRegionHomes: a CLI near the proxy makes the proxy's
// relay region its home while the agent, near the primary, keeps the
// primary's; relayed only (--disable-direct, no UDP relay), they still
// reach each other, and ssh works.
//
// Each peer picks its home by the STUN latency to each region. The
// primary's region's STUN server is reached through a UDP delay that adds
// nothing for the agent (the first socket it hears from) and 40 ms to
// every request from anyone else; the proxy's STUN server answers at
// once. So the agent, homed on the primary before the proxy existed, stays
// there (netcheck keeps a home that is within 10 ms of the best), and a
// CLI that starts afterwards finds the proxy's region nearest.
//
// Magicsock sends relayed packets to the peer's home region, so the CLI
// holds a second relay connection, to the primary's, and the pongs come
// through "tether", the agent's home: the CLI's own home is the proxy's.
func TestWorkspaceProxyRegionHomes(t *testing.T) {
	const far = 40 * time.Millisecond
	stunPort := freePort(t, "udp")
	front := startUDPDelay(t, stunPort)
	front.setDelays(0, far)
	srv := here.StartServerWith(t, harness.ServerOptions{
		STUN:     []string{"127.0.0.1:" + strconv.Itoa(stunPort)},
		UDPRelay: "disable",
		Args:     []string{"--stun-addresses", "127.0.0.1:" + strconv.Itoa(front.port())},
	})
	alice := here.Admin(t, srv.URL)
	token, agentURL := alice.CreateWorkspace("dev")

	// The agent's STUN socket is the first the delay hears from.
	front.learning.Store(true)
	agent := here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "the agent's STUN requests", func() bool { return front.taggedCount() > 0 })
	front.learning.Store(false)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool {
		select {
		case <-agent.Done():
			t.Fatalf("the agent exited:\n%s", harness.Tail(agent.Output(), 20))
		default:
		}
		return alice.AgentStatus("dev") == "connected"
	})

	px := here.StartWSProxy(t, srv.URL, alice.CreateWSProxy("edge"))
	harness.WaitFor(t, harness.StatusTimeout, "the proxy's region in the DERP map", func() bool {
		return proxyHealthy(t, alice, "edge", px.URL) && derpRegions(t, srv.URL, alice.Token())[10000]
	})

	nc := netcheck(t, alice)
	// The delay adds far to every answer from the primary's region; what
	// the proxy's region takes on a loaded machine is noise on top.
	if nc.Preferred != "edge" || nc.Latency["tether"] < float64(far/time.Millisecond) {
		t.Fatalf("the CLI's netcheck: preferred %q, latency %v; want the proxy's region, edge, preferred, and the primary's at least %s away", nc.Preferred, nc.Latency, far)
	}

	lines := pings(t, alice, "-n", "5", "--disable-direct")
	var pongs int
	for _, l := range lines {
		if l.Path == "timeout" {
			continue
		}
		pongs++
		// The agent's home is still the primary's region: the CLI's
		// packets go there.
		if l.Path != "derp" || l.DERPRegion != "tether" {
			t.Errorf("pong %+v, want relayed by tether, the agent's home", l)
		}
	}
	if pongs == 0 {
		t.Fatalf("no pong across the two home regions: %+v", lines)
	}
	if out := alice.Must("ssh", "dev", "--disable-direct", "--", "echo across-$((1+1))-regions"); !strings.Contains(out, "across-2-regions") {
		t.Errorf("ssh between a CLI homed on the proxy's region and an agent homed on the primary's printed %q", out)
	}
}
