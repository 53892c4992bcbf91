package e2e

// DERP maps as operators deploy them: Tailscale's own relay server (derper)
// as a region of its own, several regions with peers choosing the nearest,
// maps from a URL, and maps the server must refuse.

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"tailscale.com/tailcfg"
)

// With the built-in relay off, the only relay is an external derper: peers
// meet there, and data flows through it.
func TestRelayExternalOnly(t *testing.T) {
	d := startDerper(t)
	mapFile := writeDERPMap(t, derperRegion(d, d.stunPort))
	env := startWorkspace(t, "--derp-server-enable=false", "--derp-config-path", mapFile)
	u := env.User

	regions := connectionInfo(t, env.Server, u)
	if len(regions) != 1 || regions["ext"] == nil {
		t.Fatalf("peers are given regions %v, want only ext", regionCodes(regions))
	}
	lines := pingWhile(t, u, func() {
		// Both peers made derper their home (the library tells a relay
		// it is the home one).
		harness.WaitFor(t, harness.StatusTimeout, "both peers at home on derper", func() bool {
			return d.metric(t, "derp_current_home_connections") == 2
		})
	}, "--disable-direct")
	for _, l := range lines {
		if l.Path != "derp" || l.DERPRegion != "ext" {
			t.Errorf("pong %+v, want relayed by ext", l)
		}
	}
	before := d.metric(t, "derp_packets_received")
	if out := u.Must("ssh", "dev", "--disable-direct", "--", "echo via derper"); out != "via derper\n" {
		t.Errorf("ssh printed %q", out)
	}
	if after := d.metric(t, "derp_packets_received"); after <= before {
		t.Errorf("derper received %d packets during the ssh session, want some", after-before)
	}
}

func regionCodes(m map[string]*tailcfg.DERPRegion) []string {
	var out []string
	for c := range m {
		out = append(out, c)
	}
	return out
}

// Built-in relay and derper together. Each region's STUN server sits
// behind a UDP delay proxy, so the test decides which region looks near,
// and per peer: the proxies tag the agent's STUN socket when it first
// speaks, and delay tagged and other sources differently. That is how a
// workspace in one place and a user in another see the same two relays.
//
//  1. Both near "tether": both peers make it their home (the lowest
//     latency wins) and derper has no home connection.
//  2. The user moves near "ext": a fresh CLI picks ext as home while the
//     agent stays on tether (its STUN delays did not change, so its
//     periodic checks keep it there). Two peers with different home
//     regions still connect: the CLI reaches the agent at the agent's
//     home, and data flows.
func TestRelayRegionsNearestHome(t *testing.T) {
	const far = 40 * time.Millisecond
	d := startDerper(t)
	// Both proxies lead to derper's STUN server: any STUN server answers
	// the same; what differs per region is the delay.
	stunTether, stunExt := startUDPDelay(t, d.stunPort), startUDPDelay(t, d.stunPort)
	stunTether.setDelays(0, 0)
	stunExt.setDelays(far, far)
	mapFile := writeDERPMap(t, derperRegion(d, stunExt.port()))
	srv := here.StartServer(t, "--derp-config-path", mapFile, "--stun-addresses", "127.0.0.1:"+strconv.Itoa(stunTether.port()))
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	regions := connectionInfo(t, srv, u)
	if regions["tether"] == nil || regions["ext"] == nil || len(regions) != 2 {
		t.Fatalf("peers are given regions %v, want tether and ext", regionCodes(regions))
	}

	// The agent's is the first STUN socket the proxies hear from.
	stunTether.learning.Store(true)
	stunExt.learning.Store(true)
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "the agent's STUN requests", func() bool {
		return stunTether.taggedCount() > 0 && stunExt.taggedCount() > 0
	})
	stunTether.learning.Store(false)
	stunExt.learning.Store(false)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	// 1. Everyone is near tether.
	nc := netcheck(t, u)
	if nc.Preferred != "tether" || nc.Latency["ext"] < nc.Latency["tether"]+float64(far/time.Millisecond)/2 {
		t.Errorf("netcheck near tether: preferred %s, latency %v", nc.Preferred, nc.Latency)
	}
	lines := pingWhile(t, u, func() {
		if n := d.metric(t, "derp_current_home_connections"); n != 0 {
			t.Errorf("%d peers made derper their home, want none", n)
		}
	}, "--disable-direct")
	for _, l := range lines {
		if l.Path != "derp" || l.DERPRegion != "tether" {
			t.Errorf("pong %+v, want relayed by tether, the agent's home", l)
		}
	}

	// 2. The user is near ext now; the agent is not.
	stunTether.setDelays(0, far)
	stunExt.setDelays(far, 0)
	nc = netcheck(t, u)
	if nc.Preferred != "ext" {
		t.Errorf("netcheck near ext: preferred %s, latency %v", nc.Preferred, nc.Latency)
	}
	lines = pingWhile(t, u, func() {
		// The CLI is derper's only home client: the agent is not.
		harness.WaitFor(t, harness.StatusTimeout, "the CLI at home on derper", func() bool {
			return d.metric(t, "derp_current_home_connections") == 1
		})
	}, "--disable-direct")
	for _, l := range lines {
		// The CLI sends to the agent's home, tether; the agent answers
		// through the region the CLI's packets came from (magicsock
		// remembers it), so the whole exchange stays on tether.
		if l.Path != "derp" || l.DERPRegion != "tether" {
			t.Errorf("pong %+v, want relayed by tether, the agent's home", l)
		}
	}
	if out := u.Must("ssh", "dev", "--disable-direct", "--", "head -c 200000 /dev/zero | wc -c"); strings.TrimSpace(out) != "200000" {
		t.Errorf("ssh across two home regions printed %q", out)
	}
}

// netcheckResult is the part of `tether netcheck --output json` the relay
// tests read.
type netcheckResult struct {
	UDP       bool               `json:"udp"`
	Preferred string             `json:"preferred_derp"`
	Latency   map[string]float64 `json:"derp_latency_ms"`
	Endpoints []string           `json:"endpoints"`
}

func netcheck(t *testing.T, u *harness.User) netcheckResult {
	t.Helper()
	out := u.Must("netcheck", "--output", "json")
	var nc netcheckResult
	if err := json.Unmarshal([]byte(out), &nc); err != nil {
		t.Fatalf("netcheck --output json: %v\n%s", err, out)
	}
	return nc
}

// A map can come from a URL (here a local web server); the server merges it
// with its built-in region.
func TestRelayMapFromURL(t *testing.T) {
	d := startDerper(t)
	body, _ := json.Marshal(&tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{derperRegionID: derperRegion(d, d.stunPort)}})
	var fetched int
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched++
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer web.Close()
	srv := here.StartServer(t, "--derp-config-url", web.URL+"/derpmap.json")
	regions := connectionInfo(t, srv, here.Admin(t, srv.URL))
	if regions["ext"] == nil || regions["tether"] == nil || len(regions) != 2 {
		t.Fatalf("peers are given regions %v, want tether and ext", regionCodes(regions))
	}
	if n := regions["ext"].Nodes[0]; n.DERPPort != d.port || n.STUNPort != d.stunPort {
		t.Errorf("ext node %+v does not match the map served", n)
	}
	if fetched != 1 {
		t.Errorf("the map was fetched %d times, want once at start", fetched)
	}
}

// Maps the server cannot use stop it at start, with the reason, instead of
// handing peers a broken map.
func TestRelayMapRefused(t *testing.T) {
	d := startDerper(t)
	good := writeDERPMap(t, derperRegion(d, d.stunPort))
	noNodes := derperRegion(d, d.stunPort)
	noNodes.Nodes = nil
	clash := derperRegion(d, d.stunPort)
	clash.RegionID, clash.Nodes[0].RegionID = 999, 999
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/garbage":
			w.Write([]byte("<html>not a map</html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer web.Close()

	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"both path and URL", []string{"--derp-config-path", good, "--derp-config-url", web.URL + "/map"}, "exclusive"},
		{"region without nodes", []string{"--derp-config-path", writeDERPMap(t, noNodes)}, "has no nodes"},
		{"region ID of the built-in relay", []string{"--derp-config-path", writeDERPMap(t, clash)}, "--derp-server-region-id"},
		{"missing file", []string{"--derp-config-path", good + ".missing"}, "no such file"},
		{"URL answers 404", []string{"--derp-config-url", web.URL + "/map"}, "404"},
		{"URL answers HTML", []string{"--derp-config-url", web.URL + "/garbage"}, "not valid JSON"},
		{"no relay at all", []string{"--derp-server-enable=false"}, "no DERP relays"},
		{"STUN address without port", []string{"--stun-addresses", "127.0.0.1"}, "host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runServerToExit(t, tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want a non-zero exit saying %q", code, stderr, tt.want)
			}
			if strings.Contains(stderr, "goroutine ") {
				t.Errorf("stack trace:\n%s", stderr)
			}
		})
	}
}
