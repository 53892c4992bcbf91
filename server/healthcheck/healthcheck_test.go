package healthcheck

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/tetherdev/tether"
)

// A whole Run takes at most Timeout; a test a few of them.
const testTimeout = 4 * Timeout

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newAccessURL serves what the server serves for the access URL and
// WebSocket checks: buildinfo answers status, and the echo is the real one
// unless noWebSocket.
func newAccessURL(t *testing.T, status int, noWebSocket bool) *url.URL {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v2/buildinfo", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) })
	if !noWebSocket {
		mux.HandleFunc("GET "+WebSocketEchoPath, Echo)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newRelay runs a DERP relay over plain HTTP and returns its URL's host
// and port.
func newRelay(t *testing.T) (string, int) {
	d := derpserver.New(key.NewNode(), logger.Discard)
	srv := httptest.NewServer(derpserver.Handler(d))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		d.Close()
	})
	addr := srv.Listener.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port
}

// newSTUN answers STUN binding requests on a loopback port, which it
// returns.
func newSTUN(t *testing.T) int {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if tx, err := stun.ParseBindingRequest(buf[:n]); err == nil {
				pc.WriteToUDPAddrPort(stun.Response(tx, from), from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// deadPort returns a loopback port where nothing listens, over network.
func deadPort(t *testing.T, network string) int {
	var port int
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
	default:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	return port
}

func relayNode(name, host string, derpPort, stunPort int) *tailcfg.DERPNode {
	return &tailcfg.DERPNode{Name: name, HostName: host, IPv4: host, IPv6: "none", DERPPort: derpPort, STUNPort: stunPort}
}

func region(id int, code string, nodes ...*tailcfg.DERPNode) *tailcfg.DERPRegion {
	for _, n := range nodes {
		n.RegionID = id
	}
	return &tailcfg.DERPRegion{RegionID: id, RegionCode: code, RegionName: code, Nodes: nodes}
}

func check(t *testing.T, rep tether.HealthReport, name string) *tether.HealthCheck {
	t.Helper()
	for i := range rep.Checks {
		if rep.Checks[i].Name == name {
			return &rep.Checks[i]
		}
	}
	return nil
}

// TestHealthy checks a deployment where everything answers: every check is
// OK, with what it measured.
func TestHealthy(t *testing.T) {
	host, port := newRelay(t)
	stun := newSTUN(t)
	rep := Run(testContext(t), Options{
		AccessURL:     newAccessURL(t, http.StatusOK, false),
		DERPMap:       &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: region(1, "test", relayNode("1a", host, port, stun))}},
		DERPPlainHTTP: true,
		Store:         func(context.Context) error { return nil },
	})
	if !rep.Healthy || rep.Severity != tether.SeverityOK {
		t.Errorf("report: healthy %v, severity %q; want healthy and ok: %+v", rep.Healthy, rep.Severity, rep)
	}
	for _, name := range []string{"access_url", "websocket", "stun", "store", "derp"} {
		c := check(t, rep, name)
		if c == nil || c.Severity != tether.SeverityOK {
			t.Errorf("check %s = %+v, want ok", name, c)
		}
	}
	if c := check(t, rep, "replicas"); c != nil {
		t.Errorf("a single server reports a replicas check: %+v", c)
	}
	if len(rep.DERPRegions) != 1 || rep.DERPRegions[0].Severity != tether.SeverityOK || rep.DERPRegions[0].LatencyMS == nil {
		t.Errorf("DERP regions = %+v, want region 1 ok with a latency", rep.DERPRegions)
	}
	results, _ := check(t, rep, "stun").Details.([]stunResult)
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(stun)); len(results) != 1 || results[0].Server != want || !strings.HasPrefix(results[0].Seen, "127.0.0.1:") {
		t.Errorf("STUN details = %+v, want %s seeing us at 127.0.0.1", results, want)
	}
}

// TestFailures checks what each failing part reports, and that the
// report's severity is the worst of its checks.
func TestFailures(t *testing.T) {
	host, port := newRelay(t)
	goodMap := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: region(1, "test", relayNode("1a", host, port, newSTUN(t)))}}
	ok := newAccessURL(t, http.StatusOK, false)
	tests := []struct {
		name         string
		opts         Options
		check        string // the check that fails
		severity     string
		message      string
		wantHealthy  bool
		wantSeverity string
	}{
		{
			name:     "access URL answers 500",
			opts:     Options{AccessURL: newAccessURL(t, http.StatusInternalServerError, false)},
			check:    "access_url",
			severity: tether.SeverityError,
			message:  "500 Internal Server Error",
		},
		{
			name:     "no WebSockets",
			opts:     Options{AccessURL: newAccessURL(t, http.StatusOK, true)},
			check:    "websocket",
			severity: tether.SeverityError,
			message:  "must pass the Upgrade and Connection headers",
		},
		{
			name:     "store down",
			opts:     Options{Store: func(context.Context) error { return errors.New("disk on fire") }},
			check:    "store",
			severity: tether.SeverityError,
			message:  "disk on fire",
		},
		{
			name: "no STUN configured",
			opts: Options{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				1: region(1, "test", relayNode("1a", host, port, -1)),
			}}},
			check:       "stun",
			severity:    tether.SeverityWarning,
			message:     "no STUN servers are configured",
			wantHealthy: true,
		},
		{
			name: "one of two STUN servers silent",
			opts: Options{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				1: region(1, "test", relayNode("1a", host, port, newSTUN(t)), relayNode("1b", host, port, deadPort(t, "udp"))),
			}}},
			check:       "stun",
			severity:    tether.SeverityWarning,
			message:     "1 of 2 STUN servers did not answer",
			wantHealthy: true,
		},
		{
			name: "no STUN server answers",
			opts: Options{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				1: region(1, "test", relayNode("1a", host, port, deadPort(t, "udp"))),
			}}},
			check:    "stun",
			severity: tether.SeverityError,
			message:  "no STUN server answered",
		},
		{
			name: "one of two regions down",
			opts: Options{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				1: goodMap.Regions[1],
				2: region(2, "dead", relayNode("2a", "127.0.0.1", deadPort(t, "tcp"), -1)),
			}}},
			check:       "derp",
			severity:    tether.SeverityWarning,
			message:     "1 of 2 relay regions did not answer",
			wantHealthy: true,
		},
		{
			name: "every region down",
			opts: Options{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
				1: region(1, "test", relayNode("1a", "127.0.0.1", deadPort(t, "tcp"), newSTUN(t))),
			}}},
			check:    "derp",
			severity: tether.SeverityError,
			message:  "no relay region answered",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.AccessURL == nil {
				opts.AccessURL = ok
			}
			if opts.DERPMap == nil {
				opts.DERPMap = goodMap
			}
			opts.DERPPlainHTTP = true
			rep := Run(testContext(t), opts)
			c := check(t, rep, tt.check)
			if c == nil || c.Severity != tt.severity || !strings.Contains(c.Message, tt.message) {
				t.Fatalf("check %s = %+v, want %s saying %q", tt.check, c, tt.severity, tt.message)
			}
			for _, other := range rep.Checks {
				if other.Name != tt.check && other.Severity != tether.SeverityOK {
					t.Errorf("check %s failed too: %+v", other.Name, other)
				}
			}
			if rep.Healthy != tt.wantHealthy || rep.Severity != tt.severity {
				t.Errorf("report: healthy %v, severity %q; want %v, %q", rep.Healthy, rep.Severity, tt.wantHealthy, tt.severity)
			}
		})
	}
}

// TestReplicas checks the relay mesh check's findings. Both ends of the
// mesh are one relay here: what is checked is how the check reads the
// replicas it is given.
func TestReplicas(t *testing.T) {
	host, port := newRelay(t)
	relay := "http://" + net.JoinHostPort(host, strconv.Itoa(port))
	dead := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(deadPort(t, "tcp")))
	tests := []struct {
		name     string
		self     string
		replicas []Replica
		severity string
		message  string
	}{
		{"alone", relay, nil, tether.SeverityOK, "no other replica is running"},
		{"mesh works", relay, []Replica{{Hostname: "b", RelayURL: relay + "/"}}, tether.SeverityOK, "1 other replica; relayed packets reach each of them"},
		{"this relay unreachable", "", []Replica{{Hostname: "b", RelayURL: relay}}, tether.SeverityWarning, "set --derp-server-relay-url here"},
		{"other without relay URL", relay, []Replica{{Hostname: "b", RelayURL: relay}, {Hostname: "c"}}, tether.SeverityWarning,
			"fail for 1 of 2 other replicas: c has no relay URL"},
		{"other relay down", relay, []Replica{{Hostname: "b", RelayURL: dead}}, tether.SeverityWarning, "b (relay " + dead + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := replicasCheck(testContext(t), Options{
				Replicas:     func() []Replica { return tt.replicas },
				SelfRelayURL: tt.self,
			})
			if c.Severity != tt.severity || !strings.Contains(c.Message, tt.message) {
				t.Errorf("replicas check = %+v, want %s saying %q", c, tt.severity, tt.message)
			}
		})
	}
}

// TestEcho checks the server end of the WebSocket check: it answers a
// small message with itself, and a large one (over 64 bytes) not at all.
func TestEcho(t *testing.T) {
	ctx := testContext(t)
	u := newAccessURL(t, http.StatusOK, false)
	for _, tc := range []struct {
		msg  string
		echo bool
	}{
		{"ping", true},
		{strings.Repeat("x", 65), false},
	} {
		conn, _, err := websocket.Dial(ctx, "ws://"+u.Host+WebSocketEchoPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Write(ctx, websocket.MessageText, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.Read(ctx)
		switch {
		case tc.echo && (err != nil || string(got) != tc.msg):
			t.Errorf("echo of %q = %q, %v", tc.msg, got, err)
		case !tc.echo && err == nil:
			t.Errorf("a %d-byte message was echoed", len(tc.msg))
		}
		conn.CloseNow()
	}
}

// TestUDPRelayCheck checks what the report says of the UDP relay's probe
// results: which addresses answered, and what to open when none did.
func TestUDPRelayCheck(t *testing.T) {
	a := netip.MustParseAddrPort("198.18.1.2:3479")
	b := netip.MustParseAddrPort("203.0.113.7:3479")
	noAnswer := errors.New("no answer")
	tests := []struct {
		name     string
		results  map[netip.AddrPort]error
		severity string
		message  string
	}{
		{"answered", map[netip.AddrPort]error{a: nil}, tether.SeverityOK, "answered at 198.18.1.2:3479"},
		{"one of two", map[netip.AddrPort]error{a: nil, b: noAnswer}, tether.SeverityWarning, "answered at 198.18.1.2:3479 but not at 203.0.113.7:3479"},
		{"none", map[netip.AddrPort]error{a: noAnswer, b: noAnswer}, tether.SeverityWarning, "Open UDP port 3479 inbound"},
		{"no address", map[netip.AddrPort]error{}, tether.SeverityWarning, "--udp-relay-public-addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := udpRelayCheck(testContext(t), func(context.Context) map[netip.AddrPort]error { return tt.results })
			if c.Name != "udp_relay" || c.Severity != tt.severity || !strings.Contains(c.Message, tt.message) {
				t.Errorf("UDP relay check = %+v, want %s saying %q", c, tt.severity, tt.message)
			}
		})
	}
	// Without a relay there is no check.
	rep := Run(testContext(t), Options{AccessURL: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, DERPMap: &tailcfg.DERPMap{}})
	for _, c := range rep.Checks {
		if c.Name == "udp_relay" {
			t.Errorf("a report without a UDP relay has its check: %+v", c)
		}
	}
}
