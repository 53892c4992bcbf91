package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
)

// Workspace proxies: registered and listed by admins only, serving the web
// terminal and apps with sign-in handed over from the primary, in the DERP
// map while they heartbeat, and stopped by a regenerated token.

// listedProxy is a proxy as `tether wsproxy ls --output json` shows it.
type listedProxy struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	RegionID int    `json:"region_id"`
	Healthy  bool   `json:"healthy"`
	Version  string `json:"version"`
}

func listProxies(t *testing.T, u *harness.User) []listedProxy {
	t.Helper()
	var ps []listedProxy
	out := u.Must("wsproxy", "ls", "--output", "json")
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("wsproxy ls --output json: %v\n%s", err, out)
	}
	return ps
}

// proxyHealthy reports whether the named proxy is listed healthy at url.
func proxyHealthy(t *testing.T, u *harness.User, name, url string) bool {
	for _, p := range listProxies(t, u) {
		if p.Name == name {
			return p.Healthy && p.URL == url
		}
	}
	return false
}

// derpRegions returns the region IDs of the DERP map peers get.
func derpRegions(t *testing.T, srvURL, token string) map[int]bool {
	t.Helper()
	st, body := api(t, "GET", srvURL+"/api/v2/connection-info", token, nil)
	if st != http.StatusOK {
		t.Fatalf("connection-info: %d %s", st, body)
	}
	var ci struct {
		DERPMap struct {
			Regions map[string]json.RawMessage `json:"Regions"`
		} `json:"derp_map"`
	}
	if err := json.Unmarshal(body, &ci); err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for id := range ci.DERPMap.Regions {
		n, _ := strconv.Atoi(id)
		out[n] = true
	}
	return out
}

func TestWorkspaceProxyAdmin(t *testing.T) {
	srv := here.StartServer(t)
	alice := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, alice, "bob")

	// Members may not touch proxies.
	for _, args := range [][]string{{"wsproxy", "create", "edge"}, {"wsproxy", "ls"}, {"wsproxy", "delete", "edge"}, {"wsproxy", "regenerate-token", "edge"}} {
		if stderr := bob.Fails(args...); !strings.Contains(stderr, "only admins") {
			t.Errorf("tether %s by a member: %q, want a refusal for admins only", strings.Join(args, " "), stderr)
		}
	}

	token := alice.CreateWSProxy("edge", "--display-name", "Edge")
	if ps := listProxies(t, alice); len(ps) != 1 || ps[0].Name != "edge" || ps[0].Healthy || ps[0].RegionID != 10000 {
		t.Fatalf("wsproxy ls before the proxy runs = %+v, want edge, unhealthy, region 10000", ps)
	}
	if stderr := alice.Fails("wsproxy", "create", "edge"); !strings.Contains(stderr, "already exists") {
		t.Errorf("creating edge twice: %q", stderr)
	}

	// Its token opens nothing of the users' API.
	if st, body := api(t, "GET", srv.URL+"/api/v2/workspaces", "", nil, "Tether-Proxy-Token", token); st != http.StatusUnauthorized {
		t.Errorf("the proxy's token on the users' API: %d %s, want 401", st, body)
	}
	if st, body := api(t, "GET", srv.URL+"/api/v2/workspaces", token, nil); st != http.StatusUnauthorized {
		t.Errorf("the proxy's token as a session token: %d %s, want 401", st, body)
	}

	px := here.StartWSProxy(t, srv.URL, token)
	harness.WaitFor(t, harness.StatusTimeout, "the proxy listed healthy", func() bool { return proxyHealthy(t, alice, "edge", px.URL) })
	harness.WaitFor(t, harness.StatusTimeout, "the proxy's region in the DERP map", func() bool { return derpRegions(t, srv.URL, alice.Token())[10000] })
	// The primary's health report: the proxy reachable, its relay meshed
	// with the primary's, and its region answering.
	st, body := api(t, "GET", srv.URL+"/api/v2/debug/health?force=1", alice.Token(), nil)
	var rep struct {
		Checks []struct {
			Name, Severity, Message string
			Details                 []struct {
				Name      string   `json:"name"`
				Reachable bool     `json:"reachable"`
				MeshRTTMS *float64 `json:"mesh_rtt_ms"`
				Version   string   `json:"version"`
			} `json:"details"`
		} `json:"checks"`
		DERPRegions []struct {
			RegionID int    `json:"region_id"`
			Severity string `json:"severity"`
			Message  string `json:"message"`
		} `json:"derp_regions"`
	}
	if err := json.Unmarshal(body, &rep); st != http.StatusOK || err != nil {
		t.Fatalf("health: %d %v %s", st, err, body)
	}
	var sawCheck, sawRegion bool
	for _, c := range rep.Checks {
		if c.Name == "workspace_proxies" {
			sawCheck = true
			if c.Severity != "ok" || len(c.Details) != 1 || !c.Details[0].Reachable || c.Details[0].MeshRTTMS == nil || c.Details[0].Version != "dev" {
				t.Errorf("the health report's proxies check: %s", body)
			}
		}
	}
	for _, r := range rep.DERPRegions {
		if r.RegionID == 10000 {
			sawRegion = true
			if r.Severity != "ok" {
				t.Errorf("the proxy's relay region in the health report: %s: %s", r.Severity, r.Message)
			}
		}
	}
	if !sawCheck || !sawRegion {
		t.Errorf("the health report lacks the proxies check or the proxy's region: %s", body)
	}

	// A CLI measures the proxy's region like any other: its relay and its
	// STUN server answer.
	harness.WaitFor(t, harness.StatusTimeout, "netcheck to measure the proxy's region", func() bool {
		var nc struct {
			Latency map[string]float64 `json:"derp_latency_ms"`
		}
		out := alice.Must("netcheck", "--output", "json")
		return json.Unmarshal([]byte(out), &nc) == nil && nc.Latency["edge"] > 0
	})

	text := alice.Must("wsproxy", "ls")
	if !strings.Contains(text, "edge") || !strings.Contains(text, px.URL) || !strings.Contains(text, "yes") {
		t.Errorf("wsproxy ls:\n%s", text)
	}

	// A new token: the proxy stops at once, says why, and drops out.
	newToken := alice.Must("wsproxy", "regenerate-token", "edge", "--output", "json")
	if !strings.Contains(newToken, "proxy_token") {
		t.Fatalf("regenerate-token --output json = %s", newToken)
	}
	select {
	case <-px.Done():
	case <-time.After(harness.StatusTimeout):
		t.Fatal("the proxy kept running after its token was regenerated")
	}
	if out := px.Output(); !strings.Contains(out, "regenerated") {
		t.Errorf("the proxy's log does not say why it stopped:\n%s", harness.Tail(out, 10))
	}
	harness.WaitFor(t, 40*time.Second, "the stopped proxy listed unhealthy and out of the DERP map", func() bool {
		return !proxyHealthy(t, alice, "edge", px.URL) && !derpRegions(t, srv.URL, alice.Token())[10000]
	})

	alice.Must("wsproxy", "delete", "edge")
	if ps := listProxies(t, alice); len(ps) != 0 {
		t.Errorf("wsproxy ls after delete = %+v", ps)
	}
}

// proxyDeployment is a primary with subdomain apps, a workspace with apps
// whose agent runs here, and a proxy with a wildcard of its own at
// localhost (so that the browser keeps its cookies for the primary, at
// 127.0.0.1, apart).
type proxyDeployment struct {
	srv          *harness.Server
	alice, bob   *harness.User
	app          *testApp
	proxy        *harness.WSProxy
	proxyURL     string // http://localhost:PORT
	proxyPort    string
	proxyToken   string
	proxyAppHost func(app string) string // APP--dev--alice.proxy.localhost:PORT
}

func startProxyDeployment(t *testing.T, serverArgs ...string) *proxyDeployment {
	t.Helper()
	d := &proxyDeployment{app: startTestApp(t)}
	d.srv = here.StartServer(t, append([]string{"--wildcard-access-url", "*.localhost"}, serverArgs...)...)
	d.alice = here.Admin(t, d.srv.URL)
	tmpl := filepath.Join(t.TempDir(), "webdev.yaml")
	err := os.WriteFile(tmpl, []byte(fmt.Sprintf(`name: webdev
apps:
  - {name: site, url: %[1]q, share: owner}
  - {name: sub, url: %[1]q, subdomain: true, share: owner}
  - {name: pub, url: %[1]q, subdomain: true, share: public}
`, d.app.srv.URL)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d.alice.Must("templates", "push", "-f", tmpl)
	token, agentURL := d.alice.CreateWorkspace("dev", "--template", "webdev")
	agent := here.StartAgent(t, agentURL, token)
	d.bob = here.Member(t, d.srv.URL, d.alice, "bob")
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool {
		select {
		case <-agent.Done():
			t.Fatalf("the agent exited:\n%s", harness.Tail(agent.Output(), 20))
		default:
		}
		return d.alice.AgentStatus("dev") == "connected"
	})
	d.proxyToken = d.alice.CreateWSProxy("edge", "--display-name", "Edge")
	d.proxyPort = strconv.Itoa(freePort(t, "tcp"))
	d.proxyURL = "http://localhost:" + d.proxyPort
	d.startProxy(t)
	d.proxyAppHost = func(app string) string { return app + "--dev--alice.proxy.localhost:" + d.proxyPort }
	return d
}

func (d *proxyDeployment) startProxy(t *testing.T) {
	t.Helper()
	d.proxy = here.StartWSProxy(t, d.srv.URL, d.proxyToken, "--http-address", "127.0.0.1:"+d.proxyPort,
		"--access-url", d.proxyURL, "--wildcard-access-url", "*.proxy.localhost")
	harness.WaitFor(t, harness.StatusTimeout, "the proxy listed healthy", func() bool { return proxyHealthy(t, d.alice, "edge", d.proxyURL) })
}

// loopbackClient is an HTTP client with a cookie jar that reaches every
// host (localhost and its subdomains included) on loopback, as Chromium
// does, and follows redirects.
func loopbackClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := strings.Cut(addr[strings.LastIndex(addr, ":"):], ":")
		return dial(ctx, network, "127.0.0.1:"+port)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Jar: jar, Transport: tr, Timeout: harness.CommandTimeout}
}

// signInClient signs a client in at the primary as the dashboard does.
func signInClient(t *testing.T, c *http.Client, srvURL, login, password string) {
	t.Helper()
	body := fmt.Sprintf(`{"login":%q,"password":%q}`, login, password)
	req, _ := http.NewRequest("POST", srvURL+"/api/v2/users/login", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", srvURL)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in as %s: %s", login, resp.Status)
	}
}

// get fetches a page and returns its final URL, status and body.
func get(t *testing.T, c *http.Client, u string) (*url.URL, int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Request.URL, resp.StatusCode, string(b)
}

func TestWorkspaceProxyServesTerminalAndApps(t *testing.T) {
	d := startProxyDeployment(t)

	// The owner: signed in at the primary only, and handed over to the
	// proxy for the terminal page, then its WebSocket.
	alice := loopbackClient(t)
	signInClient(t, alice, d.srv.URL, "alice", harness.AdminPassword)
	final, st, body := get(t, alice, d.proxyURL+"/@alice/dev/terminal")
	if st != http.StatusOK || final.String() != d.proxyURL+"/@alice/dev/terminal" || !strings.Contains(body, `id="root"`) {
		t.Fatalf("the terminal page through the proxy: %d at %s: %.300s", st, final, body)
	}
	ctx, cancel := context.WithTimeout(t.Context(), harness.CommandTimeout)
	defer cancel()
	hdr := http.Header{"Origin": {d.proxyURL}}
	conn, resp, err := websocket.Dial(ctx, "ws://localhost:"+d.proxyPort+"/api/v2/workspaces/alice/dev/pty?reconnect=t1&height=24&width=80",
		&websocket.DialOptions{HTTPClient: alice, HTTPHeader: hdr, CompressionMode: websocket.CompressionContextTakeover})
	if err != nil {
		t.Fatalf("the terminal's WebSocket on the proxy: %v (%v)", err, resp)
	}
	defer conn.CloseNow()
	// Offered compression as browsers offer it, the terminal compresses
	// each large message on its own: no compressor is kept per terminal
	// (a proxy holds hundreds of terminals, mostly idle).
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") || !strings.Contains(ext, "server_no_context_takeover") {
		t.Errorf("the terminal's WebSocket negotiated %q, want permessage-deflate with server_no_context_takeover", ext)
	}
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"data":"echo via-proxy-$((40+2))\n"}`)); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	for !strings.Contains(seen.String(), "via-proxy-42") {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("terminal output so far %q: %v", seen.String(), err)
		}
		seen.Write(msg)
	}
	conn.Close(websocket.StatusNormalClosure, "")

	// A path-based app and a subdomain app of the proxy's own wildcard.
	final, st, body = get(t, alice, d.proxyURL+"/@alice/dev/apps/site/")
	if st != http.StatusOK || !strings.Contains(body, appMarker) || final.Host != "localhost:"+d.proxyPort {
		t.Errorf("the path-based app through the proxy: %d at %s: %.300s", st, final, body)
	}
	final, st, body = get(t, alice, "http://"+d.proxyAppHost("sub")+"/")
	if st != http.StatusOK || !strings.Contains(body, appMarker) || final.Host != d.proxyAppHost("sub") {
		t.Errorf("the subdomain app through the proxy: %d at %s: %.300s", st, final, body)
	}

	// Another member: refused alice's apps and terminal, and the app
	// never hears of it.
	before, _ := d.app.received()
	bob := loopbackClient(t)
	signInClient(t, bob, d.srv.URL, "bob", "bob-password")
	for _, u := range []string{d.proxyURL + "/@alice/dev/apps/site/", "http://" + d.proxyAppHost("sub") + "/", d.proxyURL + "/@alice/dev/terminal"} {
		_, st, body := get(t, bob, u)
		if st != http.StatusNotFound || strings.Contains(body, appMarker) {
			t.Errorf("bob opening %s through the proxy: %d %.200s, want 404", u, st, body)
		}
	}
	if after, _ := d.app.received(); after != before {
		t.Errorf("alice's app got %d requests while bob tried to open it", after-before)
	}

	// Nobody signed in: a public app opens, an owner-only one sends to
	// the primary's sign-in.
	anon := loopbackClient(t)
	_, st, body = get(t, anon, "http://"+d.proxyAppHost("pub")+"/")
	if st != http.StatusOK || !strings.Contains(body, appMarker) {
		t.Errorf("the public app through the proxy, signed out: %d %.200s", st, body)
	}
	final, _, _ = get(t, anon, "http://"+d.proxyAppHost("sub")+"/")
	if final.Path != "/login" || !strings.HasPrefix(d.srv.URL, "http://"+final.Host) {
		t.Errorf("an owner-only app through the proxy, signed out, ends at %s, want the primary's sign-in", final)
	}

	// The proxy's token alone opens no tunnel: without a grant a user's
	// hand-off gave it for the workspace, or with a forged one, the
	// primary refuses to coordinate it to the agent.
	wsBase := strings.Replace(d.srv.URL, "http://", "ws://", 1)
	var dev struct {
		ID string `json:"id"`
	}
	if st, body := api(t, "GET", d.srv.URL+"/api/v2/workspaces/alice/dev", d.alice.Token(), nil); st != http.StatusOK || json.Unmarshal(body, &dev) != nil || dev.ID == "" {
		t.Fatalf("workspace dev: %d %s", st, body)
	}
	for name, grants := range map[string][]string{"no grant": nil, "a forged grant": {"eyJqdGkiOiJ4In0.c2ln"}} {
		h := http.Header{"Tether-Proxy-Token": {d.proxyToken}}
		for _, g := range grants {
			h.Add("Tether-Proxy-Grant", g)
		}
		c, resp, err := websocket.Dial(ctx, wsBase+"/api/v2/workspaceproxies/me/coordinate?version="+tether.CoordinateProtocolVersion+"&id=6f1c2a54-0f1e-4d5c-9b1a-1d2e3f405162&agent="+dev.ID,
			&websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			c.CloseNow()
			t.Errorf("the proxy's token with %s coordinated a tunnel to the agent", name)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("the proxy's token with %s: %v (%v), want 403", name, err, resp)
		}
	}

	// The app never saw a credential of Tether's: neither the primary's
	// session nor the proxy's grant.
	_, headers := d.app.received()
	for _, secret := range []string{"tether_session", "tether_proxy_grant", "Tether-Proxy-Token", d.proxyToken} {
		if strings.Contains(headers, secret) {
			t.Errorf("the app was sent %q:\n%s", secret, headers)
		}
	}
}
