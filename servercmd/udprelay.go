package servercmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/peerrelay"
)

// udpRelaySettings are --udp-relay-address and --udp-relay-public-addresses,
// checked.
type udpRelaySettings struct {
	disabled bool
	host     netip.Addr // unspecified: advertise every interface's address
	port     uint16
	public   []netip.AddrPort
}

// parseUDPRelaySettings checks the UDP relay's flags before anything is
// opened.
func parseUDPRelaySettings(s Settings) (udpRelaySettings, error) {
	var u udpRelaySettings
	if strings.EqualFold(strings.TrimSpace(s.UDPRelayAddress), "disable") {
		u.disabled = true
		return u, nil
	}
	host, portStr, err := net.SplitHostPort(s.UDPRelayAddress)
	if err != nil {
		return u, fmt.Errorf("--udp-relay-address %q must be HOST:PORT (such as 0.0.0.0:%d) or disable", s.UDPRelayAddress, peerrelay.DefaultPort)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return u, fmt.Errorf("--udp-relay-address %q: the port must be a number from 0 to 65535", s.UDPRelayAddress)
	}
	u.port = uint16(port)
	if host == "" {
		host = "0.0.0.0"
	}
	if u.host, err = netip.ParseAddr(host); err != nil {
		return u, fmt.Errorf("--udp-relay-address %q: the host must be an IP address", s.UDPRelayAddress)
	}
	u.host = u.host.Unmap()
	for _, v := range s.UDPRelayPublicAddresses {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(v)
		if err != nil || ap.Port() == 0 {
			return u, fmt.Errorf("--udp-relay-public-addresses: %q must be IP:PORT, such as 203.0.113.7:%d", v, peerrelay.DefaultPort)
		}
		u.public = append(u.public, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return u, nil
}

// startUDPRelay starts the UDP relay as a peer of coord, or returns nil
// with --udp-relay-address disable or when the deployment has no DERP
// region (the relay's clients ask for endpoints over DERP).
func startUDPRelay(ctx context.Context, u udpRelaySettings, derpMap *tailcfg.DERPMap, coord *coordinator.Coordinator, s Settings, accessURL *url.URL, logger *slog.Logger) (*peerrelay.Relay, error) {
	if u.disabled {
		return nil, nil
	}
	if len(derpMap.Regions) == 0 {
		logger.Warn("no DERP region: the UDP relay is off")
		return nil, nil
	}
	opts := peerrelay.Options{
		Logger:              logger,
		Port:                u.port,
		Host:                u.host,
		Addrs:               u.public,
		DERPMap:             derpMap,
		DERPPlainHTTP:       accessURL.Scheme == "http",
		DERPForceWebSockets: s.DERPForceWebSockets,
		Serve: func(ctx context.Context, id uuid.UUID, st peerrelay.Stream) error {
			return coord.ServeRelay(ctx, id, st)
		},
	}
	r, err := peerrelay.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (choose another --udp-relay-address, or disable)", err)
	}
	return r, nil
}
