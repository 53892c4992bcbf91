package derpmap

import (
	"encoding/json"
	"net/url"
	"reflect"
	"slices"
	"testing"

	"tailscale.com/tailcfg"
)

// FuzzParse reads DERP maps as --derp-config-path and --derp-config-url do.
// A map that is accepted must hold what peers rely on (Validate's rules,
// checked here independently), read back the same after it is encoded
// again (the server hands it to every peer as JSON), and combine with the
// built-in region and STUN settings without the operator's map being
// changed underneath.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		seedMap,
		`{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}}`,
		`{"Regions":{"1":{"RegionID":2,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}}`,
		`{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h","DERPPort":70000}]}}}`,
		`{"Regions":{"1":null}}`,
		`{"OmitDefaultRegions":true,"Regions":{"900":{"RegionID":900,"RegionCode":"lab","RegionName":"Lab","Avoid":true,"Nodes":[` +
			`{"Name":"900a","RegionID":900,"HostName":"derp.lab.test","IPv4":"192.0.2.1","IPv6":"none","STUNPort":3478,"DERPPort":443,"CanPort80":true},` +
			`{"Name":"900s","HostName":"stun.lab.test","STUNOnly":true,"STUNPort":-1,"InsecureForTests":true}]},` +
			`"901":{"RegionID":901,"RegionCode":"b","Nodes":[{"Name":"x","HostName":"[::1]","DERPPort":0,"STUNPort":0}]}}}`,
		`{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}} trailing`,
		`{"HomeParams":{"RegionScore":{"1":0.5}},"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}}`,
	} {
		f.Add([]byte(seed))
	}
	builtin := Builtin{AccessURL: &url.URL{Scheme: "https", Host: "tether.example.com"}, RegionID: 999, Code: "tether", Name: "Tether", STUNPort: 3478}.Region()

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if m != nil {
				t.Fatalf("Parse returned a map and an error: %v", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted a map that is not one JSON value: %q", b)
		}
		checkMap(t, m)

		out, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted map does not encode: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("accepted map, encoded again, is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip changed the map:\n%s\n%+v", out, again)
		}

		for _, o := range []Options{
			{External: m},
			{External: m, Builtin: builtin},
			{External: m, STUNAddresses: []string{"192.0.2.7:3478", "stun.example.com:19302"}},
			{External: m, Builtin: builtin, DisableSTUN: true},
		} {
			// With STUN disabled, a region of STUN-only nodes has nothing
			// left and goes; every other region stays.
			keeps := func(r *tailcfg.DERPRegion) bool {
				return !o.DisableSTUN || slices.ContainsFunc(r.Nodes, func(n *tailcfg.DERPNode) bool { return !n.STUNOnly })
			}
			anyKept := o.Builtin != nil
			for _, r := range m.Regions {
				anyKept = anyKept || keeps(r)
			}
			built, err := Build(o)
			if err != nil {
				if o.Builtin != nil && m.Regions[o.Builtin.RegionID] != nil {
					continue // the built-in region's ID is taken: refused, as it must be
				}
				if !anyKept {
					continue // nothing left to relay: refused, as it must be
				}
				t.Fatalf("Build(%+v) of an accepted map: %v", o, err)
			}
			if err := Validate(built); err != nil {
				t.Fatalf("built map is not valid: %v", err)
			}
			for id, r := range m.Regions {
				if (built.Regions[id] != nil) != keeps(r) {
					t.Fatalf("built map has region %d: %v, want %v", id, built.Regions[id] != nil, keeps(r))
				}
			}
			if still, _ := json.Marshal(m); string(still) != string(out) {
				t.Fatalf("Build changed the operator's map:\n%s\n%s", out, still)
			}
		}
	})
}

// checkMap checks an accepted map against the rules peers rely on.
func checkMap(t *testing.T, m *tailcfg.DERPMap) {
	t.Helper()
	if len(m.Regions) == 0 {
		t.Fatal("accepted map has no regions")
	}
	codes := map[string]bool{}
	for id, r := range m.Regions {
		switch {
		case r == nil:
			t.Fatalf("accepted region %d is null", id)
		case id <= 0 || r.RegionID != id:
			t.Fatalf("accepted region under %d has ID %d", id, r.RegionID)
		case r.RegionCode == "" || codes[r.RegionCode]:
			t.Fatalf("accepted region %d has code %q (seen: %v)", id, r.RegionCode, codes[r.RegionCode])
		case len(r.Nodes) == 0:
			t.Fatalf("accepted region %d has no nodes", id)
		}
		codes[r.RegionCode] = true
		for _, n := range r.Nodes {
			switch {
			case n == nil:
				t.Fatalf("accepted region %d has a null node", id)
			case n.Name == "" || n.HostName == "":
				t.Fatalf("accepted region %d has node %+v without name or host", id, n)
			case n.RegionID != id:
				t.Fatalf("accepted node %s of region %d says region %d", n.Name, id, n.RegionID)
			case n.DERPPort < 0 || n.DERPPort > 65535 || n.STUNPort < -1 || n.STUNPort > 65535:
				t.Fatalf("accepted node %s has ports %d, %d", n.Name, n.DERPPort, n.STUNPort)
			}
		}
	}
}
