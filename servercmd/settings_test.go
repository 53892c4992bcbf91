package servercmd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether/internal/httpserve"
)

// testTimeout bounds every test's waits.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// parse returns the settings that args give `tether server`.
func parse(t *testing.T, args ...string) Settings {
	t.Helper()
	var s Settings
	f := pflag.NewFlagSet("server", pflag.ContinueOnError)
	s.bindFlags(f)
	if err := f.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return s
}

// parseLocal is parse with flags that keep a test's server on loopback,
// on ports of its own, with its data in a fresh directory, unless args set
// them.
func parseLocal(t *testing.T, args ...string) Settings {
	t.Helper()
	var all []string
	for _, def := range [][2]string{
		{"--http-address", "127.0.0.1:0"},
		{"--derp-server-stun-addresses", "127.0.0.1:0"}, // a list: given twice, it would hold both
		{"--data-dir", t.TempDir()},
	} {
		if !slices.ContainsFunc(args, func(a string) bool { return a == def[0] || strings.HasPrefix(a, def[0]+"=") }) {
			all = append(all, def[0], def[1])
		}
	}
	return parse(t, append(all, args...)...)
}

// TestRunRefusesBadSettings: each bad setting stops the server before it
// serves, with a one-line error that names the flag, and no stack trace.
func TestRunRefusesBadSettings(t *testing.T) {
	busy, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"log level", []string{"--log-level", "loud"}, `--log-level "loud" must be debug, info, warn or error`},
		{"log format", []string{"--log-format", "xml"}, `--log-format "xml" must be text or json`},
		{"pprof beyond loopback", []string{"--pprof-address", "0.0.0.0:0"}, `--pprof-address "0.0.0.0:0" must be a loopback address`},
		{"prometheus address", []string{"--prometheus-address", "2112"}, `--prometheus-address "2112": want host:port`},
		{"negative workspace limit", []string{"--max-workspaces-per-user", "-1"}, "--max-workspaces-per-user -1"},
		{"token lifetime", []string{"--max-token-lifetime", "0s"}, "--max-token-lifetime 0s"},
		{"certificate without key", []string{"--tls-cert-file", "cert.pem"}, "--tls-cert-file and --tls-key-file go together"},
		{"missing certificate", []string{"--tls-cert-file", "/nonexistent/cert.pem", "--tls-key-file", "/nonexistent/key.pem"}, "load TLS certificate"},
		{"trusted proxy", []string{"--trusted-proxies", "10.0.0.5,proxy.example.com"}, `--trusted-proxies: "proxy.example.com" is neither an IP address nor a CIDR range`},
		{"listen address", []string{"--http-address", "127.0.0.1:99999"}, "listen on --http-address 127.0.0.1:99999"},
		{"missing binaries directory", []string{"--agent-binaries-dir", "/nonexistent/bin"}, "--agent-binaries-dir: stat /nonexistent/bin: no such file or directory"},
		{"binaries directory is a file", []string{"--agent-binaries-dir", "/etc/passwd"}, "--agent-binaries-dir /etc/passwd is not a directory"},
		{"access URL", []string{"--access-url", "ftp://tether.example.com"}, `--access-url "ftp://tether.example.com" must be an http:// or https:// URL`},
		{"region ID", []string{"--derp-server-region-id", "0"}, "--derp-server-region-id must be positive, not 0"},
		// Checked before the database is opened: no PostgreSQL needed.
		{"relay URL", []string{"--postgres-url", "postgres://tether@127.0.0.1:1/tether", "--derp-server-relay-url", "ftp://relay"},
			`--derp-server-relay-url "ftp://relay" must be an http:// or https:// URL with a host`},
		{"STUN address in use", []string{"--derp-server-stun-addresses", busy.LocalAddr().String()},
			"built-in STUN server on " + busy.LocalAddr().String()},
		{"STUN server address", []string{"--stun-addresses", "stun.example.com"}, `--stun-addresses: "stun.example.com" is not host:port`},
		{"no relay at all", []string{"--derp-server-enable=false"}, "no DERP relays"},
		{"DERP map file", []string{"--derp-config-path", "/nonexistent/derp.json"}, "/nonexistent/derp.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := parseLocal(t, tt.args...)
			var stdout, stderr bytes.Buffer
			err := Run(testContext(t), s, &stdout, &stderr, "test")
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want one with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("not a one-line error: %q; stderr %q", err, stderr.String())
			}
			if strings.Contains(stdout.String(), "listening") {
				t.Errorf("the server said it was listening: %q", stdout.String())
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "none", in: nil, want: nil},
		{name: "addresses", in: []string{"10.0.0.5", "2001:db8::1"}, want: []string{"10.0.0.5/32", "2001:db8::1/128"}},
		{name: "ranges are masked", in: []string{"10.1.2.3/16", "2001:db8::1/64"}, want: []string{"10.1.0.0/16", "2001:db8::/64"}},
		{name: "IPv4 in IPv6 is IPv4", in: []string{"::ffff:10.0.0.5"}, want: []string{"10.0.0.5/32"}},
		{name: "blanks skipped", in: []string{" 10.0.0.5 ", ""}, want: []string{"10.0.0.5/32"}},
		{name: "a name", in: []string{"10.0.0.5", "proxy"}, wantErr: `--trusted-proxies: "proxy" is neither an IP address nor a CIDR range`},
		{name: "bad range", in: []string{"10.0.0.0/33"}, wantErr: `"10.0.0.0/33" is neither`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePrefixes(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var strs []string
			for _, p := range got {
				strs = append(strs, p.String())
			}
			if !slices.Equal(strs, tt.want) {
				t.Errorf("got %v, want %v", strs, tt.want)
			}
		})
	}
}

// TestRelayURLFor: where the other replicas reach this one's relay.
func TestRelayURLFor(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		name     string
		flag     string
		addr     net.Addr
		tls      bool
		want     string
		wantErr  string
		wantWarn bool
	}{
		{name: "given", flag: "http://10.0.0.11:3000", addr: tcp("0.0.0.0:3000"), want: "http://10.0.0.11:3000"},
		{name: "given, path and query dropped", flag: "https://relay-1.internal:8443/derp?x=1", addr: tcp("0.0.0.0:3000"), want: "https://relay-1.internal:8443"},
		{name: "given wins over the listener", flag: "http://relay-1.internal", addr: tcp("10.0.0.11:3000"), want: "http://relay-1.internal"},
		{name: "not http", flag: "ftp://relay", addr: tcp("10.0.0.11:3000"), wantErr: `--derp-server-relay-url "ftp://relay" must be an http:// or https:// URL with a host`},
		{name: "no host", flag: "http://", addr: tcp("10.0.0.11:3000"), wantErr: "must be an http:// or https:// URL with a host"},
		{name: "no scheme", flag: "10.0.0.11:3000", addr: tcp("10.0.0.11:3000"), wantErr: "must be an http:// or https:// URL with a host"},
		{name: "the listener's host", addr: tcp("10.0.0.11:3000"), want: "http://10.0.0.11:3000"},
		{name: "IPv6 listener", addr: tcp("[fd00::11]:3000"), want: "http://[fd00::11]:3000"},
		{name: "every IPv4 address", addr: tcp("0.0.0.0:3000"), wantWarn: true},
		{name: "every IPv6 address", addr: tcp("[::]:3000"), wantWarn: true},
		// The listener's certificate is unlikely to name its IP address.
		{name: "TLS", addr: tcp("10.0.0.11:443"), tls: true, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, err := relayURLFor(Settings{DERPServerRelayURL: tt.flag}, tt.addr, tt.tls, slog.New(slog.NewTextHandler(&logs, nil)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if warned := strings.Contains(logs.String(), "set --derp-server-relay-url"); warned != tt.wantWarn {
				t.Errorf("warned %v, want %v: %q", warned, tt.wantWarn, logs.String())
			}
		})
	}
}

// TestRelayFromFlags: what the relay flags start, and the DERP map that
// peers get from them.
func TestRelayFromFlags(t *testing.T) {
	external := filepath.Join(t.TempDir(), "derp.json")
	if err := os.WriteFile(external, []byte(`{"Regions":{"1":{"RegionID":1,"RegionCode":"ext","Nodes":[
		{"Name":"1a","RegionID":1,"HostName":"derp.example.com","STUNPort":3478}]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	type check func(t *testing.T, stun int, m *tailcfg.DERPMap)
	builtinNode := func(t *testing.T, m *tailcfg.DERPMap) *tailcfg.DERPNode {
		r := m.Regions[999]
		if r == nil || r.RegionCode != "tether" || len(r.Nodes) == 0 {
			t.Fatalf("no built-in region 999 in %v", m.RegionIDs())
		}
		return r.Nodes[0]
	}
	stunNodes := func(m *tailcfg.DERPMap) []string {
		var out []string
		for _, id := range m.RegionIDs() {
			for _, n := range m.Regions[id].Nodes {
				if n.STUNOnly {
					out = append(out, n.HostName)
				} else if n.STUNPort > 0 {
					out = append(out, n.HostName+" (relay)")
				}
			}
		}
		return out
	}
	tests := []struct {
		name  string
		args  []string
		check check
	}{
		{"built-in relay and STUN", nil, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if stun == 0 {
				t.Fatal("no built-in STUN server")
			}
			if n := builtinNode(t, m); n.STUNPort != stun || n.HostName != "127.0.0.1" || n.DERPPort != 3000 {
				t.Errorf("built-in node %s:%d with STUN on %d, want 127.0.0.1:3000 with STUN on %d", n.HostName, n.DERPPort, n.STUNPort, stun)
			}
		}},
		{"built-in STUN disabled", []string{"--derp-server-stun-addresses", "disable"}, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if stun != 0 {
				t.Error("a built-in STUN server started")
			}
			if got := stunNodes(m); len(got) != 0 {
				t.Errorf("peers get STUN servers %v, want none", got)
			}
		}},
		// The built-in server still answers (peers are just not told).
		{"STUN disabled for peers", []string{"--stun-addresses", "DISABLE"}, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if got := stunNodes(m); len(got) != 0 {
				t.Errorf("peers get STUN servers %v, want none", got)
			}
		}},
		{"other STUN servers", []string{"--stun-addresses", "192.0.2.1:3478,192.0.2.2:3479"}, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if got, want := stunNodes(m), []string{"192.0.2.1", "192.0.2.2"}; !slices.Equal(got, want) {
				t.Errorf("peers get STUN servers %v, want %v", got, want)
			}
		}},
		{"external relays only", []string{"--derp-server-enable=false", "--derp-config-path", external}, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if stun != 0 {
				t.Error("a built-in STUN server started without the built-in relay")
			}
			if got := m.RegionIDs(); !slices.Equal(got, []int{1}) {
				t.Errorf("regions %v, want only the external one", got)
			}
		}},
		{"external and built-in", []string{"--derp-config-path", external, "--derp-server-region-id", "7", "--derp-server-region-code", "home"}, func(t *testing.T, stun int, m *tailcfg.DERPMap) {
			if got := m.RegionIDs(); !slices.Equal(got, []int{1, 7}) || m.Regions[7].RegionCode != "home" {
				t.Errorf("regions %v, want the external 1 and the built-in 7 (home)", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := parseLocal(t, tt.args...)
			if err := checkRelaySettings(s); err != nil {
				t.Fatal(err)
			}
			st, err := startSTUN(s, nil)
			if err != nil {
				t.Fatal(err)
			}
			port := 0
			if st != nil {
				defer st.Close()
				port = st.Port()
			}
			access, err := httpserve.AccessURL("http://127.0.0.1:3000", nil, false)
			if err != nil {
				t.Fatal(err)
			}
			m, err := buildDERPMap(testContext(t), s, access, port)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, port, m)
		})
	}
}

// TestIsDisable: "disable" turns a list flag off, in any case, alone.
func TestIsDisable(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want bool
	}{
		{[]string{"disable"}, true},
		{[]string{" Disable "}, true},
		{nil, false},
		{[]string{"disable", "127.0.0.1:3478"}, false},
		{[]string{"127.0.0.1:3478"}, false},
	} {
		if got := isDisable(tt.in); got != tt.want {
			t.Errorf("isDisable(%q) = %v", tt.in, got)
		}
	}
}
