package servercmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether/derpmap"
	"github.com/tetherdev/tether/relay"
)

// isDisable reports whether a list flag says "disable".
func isDisable(v []string) bool {
	return len(v) == 1 && strings.EqualFold(strings.TrimSpace(v[0]), "disable")
}

// checkRelaySettings checks the built-in relay's settings before anything
// is opened.
func checkRelaySettings(s Settings) error {
	if s.DERPServerEnable && s.DERPServerRegionID <= 0 {
		return fmt.Errorf("--derp-server-region-id must be positive, not %d", s.DERPServerRegionID)
	}
	return nil
}

// startSTUN starts the built-in STUN servers, or returns nil when there
// are none: without a built-in relay (its region is what advertises them),
// or with --derp-server-stun-addresses disable.
func startSTUN(s Settings, logger *slog.Logger) (*relay.STUN, error) {
	addrs := s.DERPServerSTUNAddresses
	if !s.DERPServerEnable || len(addrs) == 0 || isDisable(addrs) {
		return nil, nil
	}
	st, err := relay.ListenSTUN(addrs, logger)
	if err != nil {
		return nil, fmt.Errorf("built-in %w (choose other --derp-server-stun-addresses, or disable)", err)
	}
	return st, nil
}

// buildDERPMap assembles the DERP map that peers get: the built-in
// relay's region (when it runs) with its STUN port (0 for none), the
// regions of --derp-config-path/-url, and the STUN servers of
// --stun-addresses.
func buildDERPMap(ctx context.Context, s Settings, accessURL *url.URL, stunPort int) (*tailcfg.DERPMap, error) {
	external, err := derpmap.Load(ctx, s.DERPConfigPath, s.DERPConfigURL, nil)
	if err != nil {
		return nil, err
	}
	opts := derpmap.Options{External: external}
	if s.DERPServerEnable {
		opts.Builtin = derpmap.Builtin{
			AccessURL: accessURL,
			RegionID:  s.DERPServerRegionID,
			Code:      s.DERPServerRegionCode,
			Name:      s.DERPServerRegionName,
			STUNPort:  stunPort,
		}.Region()
	}
	switch {
	case isDisable(s.STUNAddresses):
		opts.DisableSTUN = true
	case len(s.STUNAddresses) > 0:
		opts.STUNAddresses = s.STUNAddresses
	}
	return derpmap.Build(opts)
}
