// Package derpmap builds the DERP map that the server hands to every peer:
// the server's built-in relay region, regions loaded from a Tailscale-format
// JSON map (a file or a URL), and the STUN servers peers use to learn their
// public endpoints. It never adds relays or STUN servers that the operator
// did not configure: offline deployments stay offline. STUNServers reads
// the STUN servers back out of a map, for the diagnoses (the server's
// health check, the CLI's netcheck and ping).
package derpmap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"

	"tailscale.com/tailcfg"
)

// Builtin describes the server's own relay region.
type Builtin struct {
	// AccessURL is where peers reach the server's /derp endpoint.
	AccessURL *url.URL
	RegionID  int
	Code      string
	Name      string
	// STUNPort is the port of the server's built-in STUN server on the
	// access URL's host, or 0 when it has none.
	STUNPort int
}

// Region returns the built-in region.
func (b Builtin) Region() *tailcfg.DERPRegion {
	host := b.AccessURL.Hostname()
	node := &tailcfg.DERPNode{
		Name:     strconv.Itoa(b.RegionID) + "a",
		RegionID: b.RegionID,
		HostName: host,
		DERPPort: portOf(b.AccessURL),
		STUNPort: -1,
	}
	if b.STUNPort > 0 {
		node.STUNPort = b.STUNPort
	}
	// An IP literal needs no DNS; say so, so peers skip the lookup.
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			node.IPv4 = ip.String()
			node.IPv6 = "none"
		} else {
			node.IPv6 = ip.String()
			node.IPv4 = "none"
		}
	}
	return &tailcfg.DERPRegion{
		RegionID:   b.RegionID,
		RegionCode: b.Code,
		RegionName: b.Name,
		Nodes:      []*tailcfg.DERPNode{node},
	}
}

func portOf(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

// maxMapBytes bounds a DERP map read from a file or URL.
const maxMapBytes = 4 << 20

// Load reads a DERP map from a file path or a URL (exactly one of them may
// be set; neither returns nil, nil).
func Load(ctx context.Context, path, rawURL string, hc *http.Client) (*tailcfg.DERPMap, error) {
	switch {
	case path != "" && rawURL != "":
		return nil, errors.New("--derp-config-path and --derp-config-url are exclusive: pass one")
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read DERP map: %w", err)
		}
		m, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("DERP map %s: %w", path, err)
		}
		return m, nil
	case rawURL != "":
		m, err := fetch(ctx, rawURL, hc)
		if err != nil {
			return nil, fmt.Errorf("DERP map %s: %w", rawURL, err)
		}
		return m, nil
	}
	return nil, nil
}

func fetch(ctx context.Context, rawURL string, hc *http.Client) (*tailcfg.DERPMap, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMapBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if len(b) > maxMapBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxMapBytes)
	}
	return Parse(b)
}

// Parse decodes and checks a Tailscale-format DERP map.
func Parse(b []byte) (*tailcfg.DERPMap, error) {
	var m tailcfg.DERPMap
	// Unmarshal, not a Decoder: a file with something after the map (two
	// maps pasted together, say) is refused rather than half read.
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if err := Validate(&m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks what peers rely on: every region has a unique ID that
// matches its key, a code, and nodes with names and host names.
func Validate(m *tailcfg.DERPMap) error {
	if len(m.Regions) == 0 {
		return errors.New("it has no regions")
	}
	codes := map[string]int{}
	for id, r := range m.Regions {
		if r == nil {
			return fmt.Errorf("region %d is null", id)
		}
		if id <= 0 {
			return fmt.Errorf("region ID %d must be positive", id)
		}
		if r.RegionID != id {
			return fmt.Errorf("region under key %d says RegionID %d", id, r.RegionID)
		}
		if r.RegionCode == "" {
			return fmt.Errorf("region %d has no RegionCode", id)
		}
		if other, ok := codes[r.RegionCode]; ok {
			return fmt.Errorf("regions %d and %d share RegionCode %q", other, id, r.RegionCode)
		}
		codes[r.RegionCode] = id
		if len(r.Nodes) == 0 {
			return fmt.Errorf("region %d (%s) has no nodes", id, r.RegionCode)
		}
		for i, n := range r.Nodes {
			switch {
			case n == nil:
				return fmt.Errorf("region %d node %d is null", id, i)
			case n.Name == "":
				return fmt.Errorf("region %d node %d has no Name", id, i)
			case n.HostName == "":
				return fmt.Errorf("region %d node %s has no HostName", id, n.Name)
			case n.RegionID != 0 && n.RegionID != id:
				return fmt.Errorf("region %d node %s says RegionID %d", id, n.Name, n.RegionID)
			case n.DERPPort < 0 || n.DERPPort > 65535:
				return fmt.Errorf("region %d node %s has DERPPort %d", id, n.Name, n.DERPPort)
			case n.STUNPort < -1 || n.STUNPort > 65535:
				return fmt.Errorf("region %d node %s has STUNPort %d", id, n.Name, n.STUNPort)
			}
			n.RegionID = id
		}
	}
	return nil
}

// stunNodePrefix names the STUN-only nodes made from --stun-addresses.
const stunNodePrefix = "stun"

// Options assemble the map handed to peers.
type Options struct {
	// Builtin is the server's relay region, nil if it runs none.
	Builtin *tailcfg.DERPRegion
	// External holds regions from --derp-config-path/-url, or nil.
	External *tailcfg.DERPMap
	// STUNAddresses are host:port STUN servers peers use, added as
	// STUN-only nodes. Empty keeps the relays' own STUN settings.
	STUNAddresses []string
	// DisableSTUN turns off STUN everywhere (--stun-addresses disable).
	DisableSTUN bool
}

// Build assembles the DERP map.
func Build(o Options) (*tailcfg.DERPMap, error) {
	m := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}, OmitDefaultRegions: true}
	if o.External != nil {
		for id, r := range o.External.Regions {
			m.Regions[id] = r.Clone()
		}
	}
	if o.Builtin != nil {
		if r, ok := m.Regions[o.Builtin.RegionID]; ok {
			return nil, fmt.Errorf("the built-in relay's region ID %d is taken by region %q of the DERP map: choose another --derp-server-region-id", o.Builtin.RegionID, r.RegionCode)
		}
		m.Regions[o.Builtin.RegionID] = o.Builtin.Clone()
	}
	if len(m.Regions) == 0 {
		return nil, errors.New("no DERP relays: enable the built-in relay (--derp-server-enable) or pass --derp-config-path / --derp-config-url")
	}
	if o.DisableSTUN {
		for id, r := range m.Regions {
			r.Nodes = slices.DeleteFunc(r.Nodes, func(n *tailcfg.DERPNode) bool { return n.STUNOnly })
			if len(r.Nodes) == 0 {
				// A region of STUN servers only has nothing left to offer,
				// and a region without nodes is no use to peers.
				delete(m.Regions, id)
				continue
			}
			for _, n := range r.Nodes {
				n.STUNPort = -1
			}
		}
		if len(m.Regions) == 0 {
			return nil, errors.New("no DERP relays: the DERP map has only STUN servers, and --stun-addresses disable turns those off")
		}
		return m, nil
	}
	if len(o.STUNAddresses) > 0 {
		// Put the STUN-only nodes in the built-in region if there is one,
		// else the lowest region, where netcheck will probe them.
		region := m.Regions[m.RegionIDs()[0]]
		if o.Builtin != nil {
			region = m.Regions[o.Builtin.RegionID]
		}
		for _, n := range region.Nodes {
			if !n.STUNOnly {
				n.STUNPort = -1
			}
		}
		for i, addr := range o.STUNAddresses {
			n, err := stunNode(region.RegionID, i, addr)
			if err != nil {
				return nil, err
			}
			region.Nodes = append(region.Nodes, n)
		}
	}
	return m, nil
}

func stunNode(regionID, i int, addr string) (*tailcfg.DERPNode, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--stun-addresses: %q is not host:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return nil, fmt.Errorf("--stun-addresses: %q has no valid port", addr)
	}
	n := &tailcfg.DERPNode{
		Name:     fmt.Sprintf("%s%d", stunNodePrefix, i),
		RegionID: regionID,
		HostName: host,
		STUNOnly: true,
		STUNPort: p,
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			n.IPv4, n.IPv6 = ip.String(), "none"
		} else {
			n.IPv6, n.IPv4 = ip.String(), "none"
		}
	}
	return n, nil
}
