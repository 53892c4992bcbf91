package servercmd

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestUDPRelaySettings checks --udp-relay-address and
// --udp-relay-public-addresses: what each accepts and the one-line error
// for what it does not.
func TestUDPRelaySettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    udpRelaySettings
		wantErr string // a part of the error, if one is expected
	}{
		{name: "default", want: udpRelaySettings{host: netip.MustParseAddr("0.0.0.0"), port: 3479}},
		{name: "disable", args: []string{"--udp-relay-address", "disable"}, want: udpRelaySettings{disabled: true}},
		{name: "host and port", args: []string{"--udp-relay-address", "198.18.1.2:4000"},
			want: udpRelaySettings{host: netip.MustParseAddr("198.18.1.2"), port: 4000}},
		{name: "port only", args: []string{"--udp-relay-address", ":4000"},
			want: udpRelaySettings{host: netip.MustParseAddr("0.0.0.0"), port: 4000}},
		{name: "public addresses", args: []string{"--udp-relay-public-addresses", "203.0.113.7:3479,[2001:db8::1]:3479"},
			want: udpRelaySettings{host: netip.MustParseAddr("0.0.0.0"), port: 3479, public: []netip.AddrPort{
				netip.MustParseAddrPort("203.0.113.7:3479"), netip.MustParseAddrPort("[2001:db8::1]:3479")}}},
		{name: "no port", args: []string{"--udp-relay-address", "0.0.0.0"}, wantErr: "HOST:PORT"},
		{name: "bad port", args: []string{"--udp-relay-address", "0.0.0.0:99999"}, wantErr: "port"},
		{name: "host name", args: []string{"--udp-relay-address", "relay.example.com:3479"}, wantErr: "IP address"},
		{name: "public address without port", args: []string{"--udp-relay-public-addresses", "203.0.113.7"}, wantErr: "IP:PORT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUDPRelaySettings(parse(t, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error = %v; want one line with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.disabled != tc.want.disabled || got.host != tc.want.host || got.port != tc.want.port || !slices.Equal(got.public, tc.want.public) {
				t.Errorf("settings = %+v; want %+v", got, tc.want)
			}
		})
	}
}
