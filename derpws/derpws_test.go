package derpws

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// testTimeout bounds each test's waiting.
const testTimeout = 30 * time.Second

// startRelay runs a DERP relay over HTTPS that also accepts WebSocket, as
// Tether's built-in relay and Tailscale's derper do.
func startRelay(t *testing.T) *httptest.Server {
	t.Helper()
	s := derpserver.New(key.NewNode(), t.Logf)
	srv := httptest.NewTLSServer(derpserver.AddWebSocketSupport(s, derpserver.Handler(s)))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		s.Close()
	})
	return srv
}

// proxy is a reverse proxy in front of a relay that counts what it sees
// and, when refuseDERP is set, passes "Upgrade: websocket" but drops any
// other Upgrade, as reverse proxies configured only for WebSocket do.
type proxy struct {
	*httptest.Server
	refuseDERP   atomic.Bool
	refuseWS     atomic.Bool
	refusedDERP  atomic.Int64
	passedWS     atomic.Int64
	passedDERP   atomic.Int64
	otherRequest atomic.Int64
}

func startProxy(t *testing.T, relay *httptest.Server, refuseDERP bool) *proxy {
	t.Helper()
	target, _ := url.Parse(relay.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	rp.ErrorLog = nil
	p := &proxy{}
	p.refuseDERP.Store(refuseDERP)
	p.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch up := strings.ToLower(r.Header.Get("Upgrade")); {
		case up == "websocket" && p.refuseWS.Load():
			http.Error(w, "no WebSocket here", http.StatusForbidden)
			return
		case up == "websocket":
			p.passedWS.Add(1)
		case up != "" && p.refuseDERP.Load():
			p.refusedDERP.Add(1)
			r.Header.Del("Upgrade")
			r.Header.Del("Connection")
		case up != "":
			p.passedDERP.Add(1)
		default:
			p.otherRequest.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.CloseClientConnections()
		p.Close()
	})
	return p
}

// pin is a DERPNode.CertName that accepts only srv's certificate.
func pin(srv *httptest.Server) string {
	sum := sha256.Sum256(srv.Certificate().Raw)
	return "sha256-raw:" + hex.EncodeToString(sum[:])
}

// regionFor is a one-region map whose node is the server at u.
func mapFor(t *testing.T, srv *httptest.Server) *tailcfg.DERPMap {
	t.Helper()
	u, _ := url.Parse(srv.URL)
	port, _ := strconv.Atoi(u.Port())
	return &tailcfg.DERPMap{OmitDefaultRegions: true, Regions: map[int]*tailcfg.DERPRegion{
		1: {RegionID: 1, RegionCode: "test", Nodes: []*tailcfg.DERPNode{{
			Name: "1a", RegionID: 1, HostName: "127.0.0.1", IPv4: "127.0.0.1", IPv6: "none",
			DERPPort: port, STUNPort: -1, CertName: pin(srv),
		}}},
	}}
}

// peer is a relay client the way magicsock makes one: it reads the region
// from the map it currently holds, which OnChange replaces.
type peer struct {
	region int
	key    key.NodePrivate
	client *derphttp.Client
	relays *Relays

	mu  sync.Mutex
	cur *tailcfg.DERPMap
}

func newPeer(t *testing.T, dm *tailcfg.DERPMap, force bool) *peer {
	return newPeerIn(t, dm, 1, force)
}

func newPeerIn(t *testing.T, dm *tailcfg.DERPMap, region int, force bool) *peer {
	t.Helper()
	p := &peer{region: region, key: key.NewNode()}
	p.relays = Register(Options{Force: force, OnChange: func() {
		m := p.relays.Map(dm)
		p.mu.Lock()
		p.cur = m
		p.mu.Unlock()
	}})
	p.cur = p.relays.Map(dm)
	p.newClient(t)
	t.Cleanup(func() {
		p.client.Close()
		p.relays.Close()
	})
	return p
}

// newClient replaces the peer's relay client, as magicsock does when a
// connection breaks.
func (p *peer) newClient(t *testing.T) {
	if p.client != nil {
		p.client.Close()
	}
	p.client = derphttp.NewRegionClient(p.key, t.Logf, netmon.NewStatic(), func() *tailcfg.DERPRegion {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.cur.Regions[p.region]
	})
}

func (p *peer) currentMap() *tailcfg.DERPMap {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// connect retries as magicsock does (10 ms, growing) until connected, and
// returns the number of attempts.
func (p *peer) connect(ctx context.Context) (int, error) {
	for n := 1; ; n++ {
		err := p.client.Connect(ctx)
		if err == nil {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, fmt.Errorf("after %d attempts: %w", n, err)
		case <-time.After(time.Duration(n*n) * 10 * time.Millisecond):
		}
	}
}

// exchange sends packets from a to b through the relay until one arrives.
// The first may be dropped: the relay learns of b a moment after b's
// connect returns.
func exchange(t *testing.T, a, b *peer) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		for {
			m, err := b.client.Recv()
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			if pkt, ok := m.(derp.ReceivedPacket); ok {
				got <- string(pkt.Data)
				return
			}
		}
	}()
	deadline := time.After(testTimeout)
	resend := time.NewTicker(100 * time.Millisecond)
	defer resend.Stop()
	for {
		if err := a.client.Send(b.key.Public(), []byte("hello over the relay")); err != nil {
			t.Fatalf("send: %v", err)
		}
		select {
		case s := <-got:
			if s != "hello over the relay" {
				t.Fatalf("received %q", s)
			}
			return
		case <-resend.C:
		case <-deadline:
			t.Fatal("no packet arrived")
		}
	}
}

func TestRelayPaths(t *testing.T) {
	tests := []struct {
		name       string
		behind     string // "none", "refusing" or "passing" proxy
		force      bool
		wantWS     bool
		wantPinned bool // Map pins the node from the start
	}{
		{name: "direct relay stays plain", behind: "none"},
		{name: "proxy passing DERP stays plain", behind: "passing"},
		{name: "proxy refusing DERP falls back to WebSocket", behind: "refusing", wantWS: true},
		{name: "forced WebSocket skips the plain try", behind: "refusing", force: true, wantWS: true, wantPinned: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			relay := startRelay(t)
			front := relay
			var px *proxy
			if tt.behind != "none" {
				px = startProxy(t, relay, tt.behind == "refusing")
				front = px.Server
			}
			dm := mapFor(t, front)
			a, b := newPeer(t, dm, tt.force), newPeer(t, dm, tt.force)
			if pinned := a.currentMap().Regions[1].Nodes[0].CertName != dm.Regions[1].Nodes[0].CertName; pinned != tt.wantPinned {
				t.Errorf("map pinned to the bridge before any dial: %v, want %v", pinned, tt.wantPinned)
			}
			start := time.Now()
			na, err := a.connect(ctx)
			if err != nil {
				t.Fatalf("peer a: %v", err)
			}
			nb, err := b.connect(ctx)
			if err != nil {
				t.Fatalf("peer b: %v", err)
			}
			t.Logf("connected after %d and %d attempts, %v", na, nb, time.Since(start).Round(time.Millisecond))
			exchange(t, a, b)
			exchange(t, b, a)
			if dm.Regions[1].Nodes[0].CertName != pin(front) {
				t.Error("Map modified the caller's map")
			}
			if px == nil {
				return
			}
			if tt.wantWS {
				if px.passedWS.Load() < 2 {
					t.Errorf("the proxy passed %d WebSocket upgrades, want one per peer at least", px.passedWS.Load())
				}
				if tt.force && px.refusedDERP.Load() != 0 {
					t.Errorf("forced: the proxy still saw %d DERP upgrades", px.refusedDERP.Load())
				}
				if !tt.force && px.refusedDERP.Load() == 0 {
					t.Error("the plain DERP upgrade was never tried")
				}
			} else if px.passedWS.Load() != 0 {
				t.Errorf("the proxy saw %d WebSocket upgrades, want none", px.passedWS.Load())
			}
		})
	}
}

// A relay that neither upgrade reaches stays on plain DERP: WebSocket would
// not help, and the verdict says why.
func TestProbeVerdicts(t *testing.T) {
	relay := startRelay(t)
	refusing := startProxy(t, relay, true)
	// A proxy that refuses every upgrade, WebSocket included.
	wall := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no upgrades here", http.StatusForbidden)
	}))
	defer wall.Close()
	down := mapFor(t, relay)
	down.Regions[1].Nodes[0].DERPPort = closedPort(t)

	tests := []struct {
		name   string
		dm     *tailcfg.DERPMap
		want   verdict
		detail string
	}{
		{"relay", mapFor(t, relay), plainDERP, ""},
		{"refusing proxy", mapFor(t, refusing.Server), useWebSocket, "426"},
		{"proxy refusing all upgrades", mapFor(t, wall), unreachable, "403"},
		{"nothing listening", down, unreachable, "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			n := tt.dm.Regions[1].Nodes[0]
			got := probe(ctx, relayInfo{key: dialKey(n, true), node: n, https: true})
			if got.verdict != tt.want || !strings.Contains(got.detail, tt.detail) {
				t.Errorf("probe = %v (%s), want %v (with %q)", got.verdict, got.detail, tt.want, tt.detail)
			}
		})
	}
}

func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// The bridge serves only CONNECTs with its credentials to relays that were
// registered: it is not an open proxy for other local users.
func TestBridgeRefusesStrangers(t *testing.T) {
	relay := startRelay(t)
	dm := mapFor(t, relay)
	h := Register(Options{Force: true})
	defer h.Close()
	h.Map(dm)
	process.mu.Lock()
	b := process.st.bridge
	process.mu.Unlock()
	if b == nil {
		t.Fatal("forced WebSocket started no bridge")
	}
	key := dialKey(dm.Regions[1].Nodes[0], true)
	tests := []struct {
		name, target, auth string
		want               int
	}{
		{"no credentials", key, "", http.StatusProxyAuthRequired},
		{"wrong credentials", key, "Basic dGV0aGVyOndyb25n", http.StatusProxyAuthRequired},
		{"unregistered target", "127.0.0.1:22", b.auth, http.StatusForbidden},
		{"registered relay", key, b.auth, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", b.url.Host, testTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testTimeout))
			req := "CONNECT " + tt.target + " HTTP/1.1\r\nHost: " + tt.target + "\r\n"
			if tt.auth != "" {
				req += "Proxy-Authorization: " + tt.auth + "\r\n"
			}
			fmt.Fprint(c, req+"\r\n")
			var code int
			var proto, rest string
			if _, err := fmt.Fscanf(c, "%s %d %s", &proto, &code, &rest); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Fatalf("reading the answer: %v", err)
			}
			if code != tt.want {
				t.Errorf("CONNECT answered %d, want %d", code, tt.want)
			}
		})
	}
}

// The hook learns only a relay's host name, so when one relay on a host
// needs WebSocket, the bridge also receives the dials of the other relays
// on that host, and passes those through untouched.
func TestSharedHostPassThrough(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	relay := startRelay(t)
	refusing := startProxy(t, relay, true)
	passing := startProxy(t, relay, false)
	dm := mapFor(t, refusing.Server)
	two := mapFor(t, passing.Server)
	dm.Regions[2] = two.Regions[1]
	dm.Regions[2].RegionID, dm.Regions[2].RegionCode = 2, "other"
	dm.Regions[2].Nodes[0].RegionID = 2

	a := newPeerIn(t, dm, 1, false) // behind the refusing proxy
	b := newPeerIn(t, dm, 2, false) // same host, another port
	if _, err := a.connect(ctx); err != nil {
		t.Fatalf("peer a: %v", err)
	}
	if refusing.passedWS.Load() == 0 {
		t.Fatal("peer a did not fall back to WebSocket")
	}
	if _, err := b.connect(ctx); err != nil {
		t.Fatalf("peer b: %v", err)
	}
	exchange(t, a, b)
	exchange(t, b, a)
	if n := passing.passedWS.Load(); n != 0 {
		t.Errorf("the relay that passes DERP saw %d WebSocket upgrades", n)
	}
	if n := passing.passedDERP.Load(); n == 0 {
		t.Error("the relay that passes DERP saw no DERP upgrade")
	}
	if b.currentMap().Regions[2].Nodes[0].CertName != pin(passing.Server) {
		t.Error("the plain relay's node was pinned to the bridge")
	}
}

// connectProxy is a user's HTTPS_PROXY: it serves CONNECT, resolving the
// test's relay host name to loopback, and counts the tunnels it opened.
type connectProxy struct {
	*httptest.Server
	tunnels atomic.Int64
}

func startConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		host, port, _ := net.SplitHostPort(r.Host)
		if host == userProxyRelayHost {
			host = "127.0.0.1"
		}
		up, err := net.Dial("tcp", net.JoinHostPort(host, port))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		p.tunnels.Add(1)
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\n\r\n")
		go func() {
			defer up.Close()
			defer c.Close()
			done := make(chan struct{}, 2)
			go func() { io.Copy(up, brw); done <- struct{}{} }()
			go func() { io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}))
	t.Cleanup(func() {
		p.CloseClientConnections()
		p.Close()
	})
	return p
}

// userProxyRelayHost names the relay in TestUserProxy: not a loopback
// address, which HTTPS_PROXY never applies to.
const userProxyRelayHost = "relay.test"

// HTTPS_PROXY keeps applying to relay connections, on plain DERP and over
// WebSocket. net/http reads the proxy environment once per process, so the
// test runs itself again in a child process with HTTPS_PROXY set.
func TestUserProxy(t *testing.T) {
	if os.Getenv("DERPWS_TEST_USER_PROXY") == "" {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		proxy := startConnectProxy(t)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestUserProxy$", "-test.v")
		cmd.Env = append(os.Environ(), "DERPWS_TEST_USER_PROXY=1", "HTTPS_PROXY="+proxy.URL, "NO_PROXY=", "no_proxy=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if proxy.tunnels.Load() == 0 {
			t.Fatalf("the user's proxy opened no tunnel:\n%s", out)
		}
		t.Logf("the user's proxy opened %d tunnels", proxy.tunnels.Load())
		return
	}
	tests := []struct {
		name   string
		refuse bool
	}{
		{"plain DERP through the user's proxy", false},
		{"WebSocket through the user's proxy", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			front := startProxy(t, startRelay(t), tt.refuse)
			dm := mapFor(t, front.Server)
			n := dm.Regions[1].Nodes[0]
			n.HostName, n.CertName, n.InsecureForTests = userProxyRelayHost, "", true
			a, b := newPeer(t, dm, false), newPeer(t, dm, false)
			if _, err := a.connect(ctx); err != nil {
				t.Fatalf("peer a: %v", err)
			}
			if _, err := b.connect(ctx); err != nil {
				t.Fatalf("peer b: %v", err)
			}
			exchange(t, a, b)
			if ws := front.passedWS.Load(); (ws > 0) != tt.refuse {
				t.Errorf("%d WebSocket upgrades reached the relay", ws)
			}
		})
	}
}

// A relay on WebSocket goes back to plain DERP when its WebSocket dials
// start failing and plain DERP is answered again (the proxy was changed).
func TestBackToPlainDERP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	relay := startRelay(t)
	px := startProxy(t, relay, true)
	dm := mapFor(t, px.Server)
	a, b := newPeer(t, dm, false), newPeer(t, dm, false)
	if _, err := a.connect(ctx); err != nil {
		t.Fatal(err)
	}
	if px.passedWS.Load() == 0 {
		t.Fatal("no WebSocket fallback")
	}
	px.refuseDERP.Store(false)
	px.refuseWS.Store(true)
	plainBefore := px.passedDERP.Load()
	a.newClient(t)
	start := time.Now()
	n, err := a.connect(ctx)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	t.Logf("back on plain DERP after %d attempts, %v", n, time.Since(start).Round(time.Millisecond))
	if px.passedDERP.Load() == plainBefore {
		t.Error("no plain DERP upgrade passed after the proxy changed")
	}
	if a.currentMap().Regions[1].Nodes[0].CertName != pin(px.Server) {
		t.Error("the node is still pinned to the bridge")
	}
	if _, err := b.connect(ctx); err != nil {
		t.Fatal(err)
	}
	exchange(t, b, a)
}
