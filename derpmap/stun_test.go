package derpmap

import (
	"net/netip"
	"net/url"
	"reflect"
	"testing"

	"tailscale.com/tailcfg"
)

func TestSTUNServers(t *testing.T) {
	addr := netip.MustParseAddr
	node := func(n tailcfg.DERPNode) *tailcfg.DERPNode { return &n }
	m := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		// Region 2 sorts after region 1 whatever the map's order.
		2: {RegionID: 2, RegionCode: "two", Nodes: []*tailcfg.DERPNode{
			node(tailcfg.DERPNode{Name: "v4", HostName: "relay.example.com", IPv4: "192.0.2.1", IPv6: "none", STUNPort: 3479}),
			node(tailcfg.DERPNode{Name: "off", HostName: "192.0.2.2", STUNPort: -1}),
			node(tailcfg.DERPNode{Name: "dns", HostName: "stun.example.com"}),
			node(tailcfg.DERPNode{Name: "dns+v6", HostName: "stun.example.com", IPv6: "2001:db8::1"}),
			node(tailcfg.DERPNode{Name: "literal host", HostName: "192.0.2.3"}),
			node(tailcfg.DERPNode{Name: "v4 off", HostName: "192.0.2.4", IPv4: "none"}),
			node(tailcfg.DERPNode{Name: "test ip", HostName: "192.0.2.5", STUNTestIP: "127.0.0.1", STUNPort: 9}),
			node(tailcfg.DERPNode{Name: "nothing", HostName: "x", IPv4: "none", IPv6: "none"}),
		}},
		1: {RegionID: 1, RegionCode: "one", Nodes: []*tailcfg.DERPNode{
			node(tailcfg.DERPNode{Name: "v6 host", HostName: "2001:db8::2"}),
		}},
	}}
	want := []STUNServer{
		{RegionID: 1, RegionCode: "one", Node: "v6 host", Port: 3478, IPv6: addr("2001:db8::2")},
		{RegionID: 2, RegionCode: "two", Node: "v4", Port: 3479, IPv4: addr("192.0.2.1")},
		{RegionID: 2, RegionCode: "two", Node: "dns", Port: 3478, HostName: "stun.example.com"},
		{RegionID: 2, RegionCode: "two", Node: "dns+v6", Port: 3478, IPv6: addr("2001:db8::1"), HostName: "stun.example.com"},
		{RegionID: 2, RegionCode: "two", Node: "literal host", Port: 3478, IPv4: addr("192.0.2.3")},
		{RegionID: 2, RegionCode: "two", Node: "test ip", Port: 9, IPv4: addr("127.0.0.1")},
	}
	got := STUNServers(m)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("STUNServers =\n%+v\nwant\n%+v", got, want)
	}
	wantAddrs := []string{"[2001:db8::2]:3478", "192.0.2.1:3479", "stun.example.com:3478", "[2001:db8::1]:3478", "192.0.2.3:3478", "127.0.0.1:9"}
	for i, s := range got {
		if i < len(wantAddrs) && s.Addr() != wantAddrs[i] {
			t.Errorf("%s: Addr = %q, want %q", s.Node, s.Addr(), wantAddrs[i])
		}
	}
	if STUNServers(nil) != nil {
		t.Error("a nil map has STUN servers")
	}
}

// TestSTUNServersOfBuild checks the servers of maps that Build makes, which
// is what peers and the diagnoses get.
func TestSTUNServersOfBuild(t *testing.T) {
	access, err := url.Parse("https://203.0.113.9:8443")
	if err != nil {
		t.Fatal(err)
	}
	builtin := Builtin{AccessURL: access, RegionID: 999, Code: "tether", Name: "Tether", STUNPort: 3478}
	for _, tc := range []struct {
		name  string
		opts  Options
		addrs []string
	}{
		{"built-in STUN", Options{Builtin: builtin.Region()}, []string{"203.0.113.9:3478"}},
		{"--stun-addresses", Options{Builtin: builtin.Region(), STUNAddresses: []string{"198.51.100.1:3478", "stun.example.com:19302"}},
			[]string{"198.51.100.1:3478", "stun.example.com:19302"}},
		{"--stun-addresses disable", Options{Builtin: builtin.Region(), DisableSTUN: true}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Build(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var addrs []string
			for _, s := range STUNServers(m) {
				addrs = append(addrs, s.Addr())
			}
			if !reflect.DeepEqual(addrs, tc.addrs) {
				t.Errorf("STUN servers %q, want %q", addrs, tc.addrs)
			}
		})
	}
}
