package derpmap

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"tailscale.com/tailcfg"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const seedMap = `{
  "Regions": {
    "1": {
      "RegionID": 1,
      "RegionCode": "myderp",
      "RegionName": "My DERP",
      "Nodes": [{"Name": "1", "RegionID": 1, "HostName": "your-hostname.com"}]
    }
  }
}`

func TestParse(t *testing.T) {
	tests := []struct {
		name, json, wantErr string
	}{
		{"seed example", seedMap, ""},
		{"not json", `{"Regions":`, "not valid JSON"},
		{"no regions", `{"Regions":{}}`, "no regions"},
		{"id mismatch", `{"Regions":{"1":{"RegionID":2,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}}`, "says RegionID 2"},
		{"no code", `{"Regions":{"1":{"RegionID":1,"Nodes":[{"Name":"1","HostName":"h"}]}}}`, "no RegionCode"},
		{"dup code", `{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]},"2":{"RegionID":2,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}}`, "share RegionCode"},
		{"no nodes", `{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[]}}}`, "no nodes"},
		{"no host", `{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1"}]}}}`, "no HostName"},
		{"null region", `{"Regions":{"1":null}}`, "is null"},
		{"bad port", `{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h","DERPPort":70000}]}}}`, "DERPPort 70000"},
		{"trailing data", `{"Regions":{"1":{"RegionID":1,"RegionCode":"a","Nodes":[{"Name":"1","HostName":"h"}]}}} {"Regions":{}}`, "not valid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.json))
			if tc.wantErr == "" {
				if err != nil || m.Regions[1].Nodes[0].RegionID != 1 {
					t.Fatalf("Parse = %+v, %v", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "derpmap.json")
	os.WriteFile(path, []byte(seedMap), 0o600)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(seedMap))
	}))
	defer ts.Close()

	if m, err := Load(ctx, path, "", nil); err != nil || m.Regions[1].RegionCode != "myderp" {
		t.Errorf("from file: %+v, %v", m, err)
	}
	if m, err := Load(ctx, "", ts.URL, ts.Client()); err != nil || m.Regions[1].RegionCode != "myderp" {
		t.Errorf("from URL: %+v, %v", m, err)
	}
	if _, err := Load(ctx, path, ts.URL, nil); err == nil || !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("both: %v", err)
	}
	if _, err := Load(ctx, "", ts.URL+"/missing", ts.Client()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("404: %v", err)
	}
	if m, err := Load(ctx, "", "", nil); m != nil || err != nil {
		t.Errorf("neither: %v, %v", m, err)
	}
}

func builtin(t *testing.T, stunPort int) *tailcfg.DERPRegion {
	u, _ := url.Parse("http://127.0.0.1:3000")
	return Builtin{AccessURL: u, RegionID: 999, Code: "tether", Name: "Tether", STUNPort: stunPort}.Region()
}

func TestBuild(t *testing.T) {
	ext, _ := Parse([]byte(seedMap))

	r := builtin(t, 3478)
	if n := r.Nodes[0]; n.HostName != "127.0.0.1" || n.IPv4 != "127.0.0.1" || n.DERPPort != 3000 || n.STUNPort != 3478 {
		t.Errorf("built-in node = %+v", n)
	}
	if n := builtin(t, 0).Nodes[0]; n.STUNPort != -1 {
		t.Errorf("built-in without STUN has STUNPort %d, want -1 (0 would mean the default port)", n.STUNPort)
	}

	m, err := Build(Options{Builtin: builtin(t, 3478), External: ext})
	if err != nil || len(m.Regions) != 2 || !m.OmitDefaultRegions {
		t.Fatalf("Build = %+v, %v", m, err)
	}

	m, err = Build(Options{Builtin: builtin(t, 3478), STUNAddresses: []string{"198.18.0.1:3478", "[2001:db8::1]:3479"}})
	if err != nil {
		t.Fatal(err)
	}
	nodes := m.Regions[999].Nodes
	if len(nodes) != 3 || nodes[0].STUNPort != -1 || !nodes[1].STUNOnly || nodes[1].IPv4 != "198.18.0.1" || nodes[2].IPv6 != "2001:db8::1" || nodes[2].STUNPort != 3479 {
		t.Errorf("with STUN addresses: %+v %+v %+v", nodes[0], nodes[1], nodes[2])
	}

	m, err = Build(Options{External: ext, DisableSTUN: true})
	if err != nil || m.Regions[1].Nodes[0].STUNPort != -1 {
		t.Errorf("DisableSTUN: %+v, %v", m, err)
	}
	if ext.Regions[1].Nodes[0].STUNPort != 0 {
		t.Error("Build changed its input")
	}

	if _, err := Build(Options{}); err == nil || !strings.Contains(err.Error(), "no DERP relays") {
		t.Errorf("no regions: %v", err)
	}
	clash := builtin(t, 0)
	clash.RegionID = 1
	if _, err := Build(Options{Builtin: clash, External: ext}); err == nil || !strings.Contains(err.Error(), "--derp-server-region-id") {
		t.Errorf("region ID clash: %v", err)
	}
	if _, err := Build(Options{Builtin: builtin(t, 0), STUNAddresses: []string{"nohost"}}); err == nil {
		t.Error("bad STUN address accepted")
	}
}

// A region of the operator's map with only STUN-only nodes has nothing left
// once STUN is disabled: it goes, rather than reaching peers as a region
// without nodes (found by FuzzParse). A map with nothing else is refused.
func TestBuildDisableSTUNDropsEmptyRegions(t *testing.T) {
	ext, err := Parse([]byte(`{"Regions":{
		"1":{"RegionID":1,"RegionCode":"relay","Nodes":[{"Name":"1a","HostName":"derp.example.com"}]},
		"2":{"RegionID":2,"RegionCode":"stun","Nodes":[{"Name":"2s","HostName":"stun.example.com","STUNOnly":true,"STUNPort":3478}]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(Options{External: ext, DisableSTUN: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(m); err != nil {
		t.Fatalf("built map is not valid: %v", err)
	}
	if m.Regions[2] != nil || m.Regions[1] == nil {
		t.Fatalf("regions %v, want only the relay's", m.RegionIDs())
	}
	if len(ext.Regions[2].Nodes) != 1 {
		t.Error("Build changed its input")
	}

	onlySTUN := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{2: ext.Regions[2]}}
	if _, err := Build(Options{External: onlySTUN, DisableSTUN: true}); err == nil || !strings.Contains(err.Error(), "no DERP relays") {
		t.Fatalf("a map of STUN-only regions with STUN disabled: %v", err)
	}
}
