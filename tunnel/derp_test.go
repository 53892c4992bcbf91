package tunnel

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"tailscale.com/tailcfg"
)

func TestProvisionalHome(t *testing.T) {
	node := func(stun int) *tailcfg.DERPNode { return &tailcfg.DERPNode{STUNPort: stun} }
	stunOnly := &tailcfg.DERPNode{STUNPort: 3478, STUNOnly: true}
	region := func(id int, nodes ...*tailcfg.DERPNode) *tailcfg.DERPRegion {
		return &tailcfg.DERPRegion{RegionID: id, Nodes: nodes}
	}
	for _, tc := range []struct {
		name    string
		regions []*tailcfg.DERPRegion
		want    int
	}{
		{"no regions", nil, 0},
		{"one region with STUN", []*tailcfg.DERPRegion{region(7, node(3478))}, 7},
		{"one region without STUN", []*tailcfg.DERPRegion{region(7, node(-1))}, 7},
		{"several without STUN: lowest ID", []*tailcfg.DERPRegion{region(9, node(-1)), region(3, node(-1))}, 3},
		{"several with STUN: wait for the netcheck", []*tailcfg.DERPRegion{region(9, node(3478)), region(3, node(-1))}, 0},
		{"STUN-only regions cannot be home", []*tailcfg.DERPRegion{region(2, stunOnly), region(5, node(-1))}, 5},
		{"avoided regions are skipped", []*tailcfg.DERPRegion{{RegionID: 1, Avoid: true, Nodes: []*tailcfg.DERPNode{node(-1)}}, region(4, node(-1))}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dm := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}
			for _, r := range tc.regions {
				dm.Regions[r.RegionID] = r
			}
			if got := provisionalHome(dm); got != tc.want {
				t.Errorf("provisionalHome = %d, want %d", got, tc.want)
			}
		})
	}
}

// childEnv marks the child process of TestPlainHTTPDERP.
const childEnv = "TETHER_TUNNEL_TEST_PLAIN_HTTP_CHILD"

// TestPlainHTTPDERP checks relaying through a plain-HTTP relay, as a
// development server at an http:// URL runs. The library's switch for it is
// process-wide and cannot be undone, so the test runs in a child process
// and the other tests keep using HTTPS.
func TestPlainHTTPDERP(t *testing.T) {
	if os.Getenv(childEnv) == "" {
		ctx := testContext(t)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPlainHTTPDERP$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child test: %v\n%s", err, out)
		}
		return
	}

	dm := newDERP(t, derpOptions{plainHTTP: true})
	opts := Options{DERPPlainHTTP: true, BlockEndpoints: true}
	a, b := pair(t, dm, opts, opts)
	ctx := testContext(t)
	conn := dialEcho(t, ctx, a, b, 80)
	if err := echoOnce(conn, "plain", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if res, err := a.Ping(ctx, b.Addr()); err != nil || res.Direct || res.DERPRegionCode != "test" {
		t.Fatalf("ping = %+v, %v; want DERP test", res, err)
	}
}
