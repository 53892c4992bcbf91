// Package healthcheck examines a deployment from the server's side: whether
// the server reaches its own access URL (plain HTTP and WebSocket), a round
// trip through every DERP relay node, an answer from every STUN server, and
// the store. Each finding comes with a severity and a message a person can
// act on.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/derpmap"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Timeout bounds each check; all run at once.
const Timeout = 5 * time.Second

// WebSocketEchoPath is where the server answers the WebSocket check.
const WebSocketEchoPath = "/api/v2/debug/ws"

// Options say what to check.
type Options struct {
	AccessURL *url.URL
	DERPMap   *tailcfg.DERPMap
	// DERPPlainHTTP reaches relays over HTTP, as the peers do.
	DERPPlainHTTP bool
	// Store checks the store; nil skips it.
	Store func(ctx context.Context) error
	// HTTPClient reaches the access URL; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Replicas, when set, lists the other replicas of a multi-replica
	// deployment; each relay mesh link is checked from SelfRelayURL, where
	// the other replicas reach this one's relay.
	Replicas     func() []Replica
	SelfRelayURL string
	// OwnRegionID is the DERP region of the server's built-in relay (and
	// its replicas'), which admits only the deployment's peers and
	// clients with MeshKey; the checks of that region and of the
	// replicas' relays connect with MeshKey. Zero: no built-in relay.
	// Relays of other regions never see the key.
	OwnRegionID int
	MeshKey     key.DERPMesh
	// UDPRelay probes the server's UDP relay and returns each of its
	// addresses' failure (nil: it answered); nil skips the check.
	UDPRelay func(ctx context.Context) map[netip.AddrPort]error
	// Proxies, when set, lists the registered workspace proxies. Their
	// relays share MeshKey: their regions' checks use it, and each
	// healthy proxy is checked from here (reachable, its relay meshed
	// with the built-in one).
	Proxies func() []Proxy
}

// Proxy is a registered workspace proxy, as the proxies check sees it.
type Proxy struct {
	Name     string
	URL      string // its access URL; "" before its first heartbeat
	RegionID int
	Version  string
	Healthy  bool // it heartbeat recently
	// LastHeartbeat is zero if it never did.
	LastHeartbeat time.Time
}

// Replica is another server replica, as the replicas check sees it.
type Replica struct {
	Hostname string
	RelayURL string // "" if the others cannot reach its relay
}

// Run runs every check and returns the report.
func Run(ctx context.Context, o Options) tether.HealthReport {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	var (
		wg      sync.WaitGroup
		checks  = make([]tether.HealthCheck, 7)
		regions []tether.DERPRegionHealth
	)
	var proxies []Proxy
	if o.Proxies != nil {
		proxies = o.Proxies()
	}
	wg.Add(8)
	go func() { defer wg.Done(); checks[0] = accessURL(ctx, hc, o.AccessURL) }()
	go func() { defer wg.Done(); checks[1] = webSocket(ctx, hc, o.AccessURL) }()
	go func() { defer wg.Done(); checks[2] = stunServers(ctx, o.DERPMap) }()
	go func() { defer wg.Done(); checks[3] = storeCheck(ctx, o.Store) }()
	go func() { defer wg.Done(); regions = derpRegions(ctx, o) }()
	go func() { defer wg.Done(); checks[4] = replicasCheck(ctx, o) }()
	go func() { defer wg.Done(); checks[5] = udpRelayCheck(ctx, o.UDPRelay) }()
	go func() { defer wg.Done(); checks[6] = proxiesCheck(ctx, hc, o, proxies) }()
	wg.Wait()

	derpCheck := tether.HealthCheck{Name: "derp", Severity: tether.SeverityOK, Message: fmt.Sprintf("all %d relay regions answered", len(regions))}
	failed := 0
	for _, r := range regions {
		if r.Severity != tether.SeverityOK {
			failed++
		}
	}
	switch {
	case failed == len(regions):
		derpCheck.Severity = tether.SeverityError
		derpCheck.Message = "no relay region answered: connections that cannot go direct will fail. See each region below."
	case failed > 0:
		derpCheck.Severity = tether.SeverityWarning
		derpCheck.Message = fmt.Sprintf("%d of %d relay regions did not answer; peers use the others", failed, len(regions))
	}
	checks = append(checks, derpCheck)
	checks = slices.DeleteFunc(checks, func(c tether.HealthCheck) bool {
		return c.Name == "store" && o.Store == nil || c.Name == "replicas" && o.Replicas == nil ||
			c.Name == "udp_relay" && o.UDPRelay == nil ||
			c.Name == "workspace_proxies" && len(proxies) == 0
	})
	rep := tether.HealthReport{Severity: tether.SeverityOK, Checks: checks, DERPRegions: regions, CheckedAt: time.Now().UTC()}
	for _, c := range checks {
		rep.Severity = worse(rep.Severity, c.Severity)
	}
	rep.Healthy = rep.Severity != tether.SeverityError
	return rep
}

func worse(a, b string) string {
	rank := map[string]int{tether.SeverityOK: 0, tether.SeverityWarning: 1, tether.SeverityError: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func accessURL(ctx context.Context, hc *http.Client, u *url.URL) tether.HealthCheck {
	c := tether.HealthCheck{Name: "access_url", Severity: tether.SeverityOK}
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String()+"/api/v2/buildinfo", nil)
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("it answered %s", resp.Status)
		}
	}
	if err != nil {
		c.Severity = tether.SeverityError
		c.Message = fmt.Sprintf("the server cannot reach its own access URL %s (%v). Users and agents must reach it: check --access-url, DNS, TLS and firewalls.", u, err)
		return c
	}
	c.Message = fmt.Sprintf("%s answers (%s)", u, time.Since(start).Round(time.Millisecond))
	return c
}

func webSocket(ctx context.Context, hc *http.Client, u *url.URL) tether.HealthCheck {
	c := tether.HealthCheck{Name: "websocket", Severity: tether.SeverityOK}
	wsURL := *u
	wsURL.Scheme = map[string]string{"https": "wss", "http": "ws"}[u.Scheme]
	wsURL.Path += WebSocketEchoPath
	conn, _, err := websocket.Dial(ctx, wsURL.String(), &websocket.DialOptions{HTTPClient: hc})
	if err == nil {
		defer conn.CloseNow()
		if err = conn.Write(ctx, websocket.MessageText, []byte("ping")); err == nil {
			var msg []byte
			_, msg, err = conn.Read(ctx)
			if err == nil && string(msg) != "ping" {
				err = fmt.Errorf("the echo came back as %q", msg)
			}
		}
		conn.Close(websocket.StatusNormalClosure, "")
	}
	if err != nil {
		c.Severity = tether.SeverityError
		c.Message = fmt.Sprintf("a WebSocket through the access URL failed (%v). Coordination and the web terminal need WebSockets: a proxy in front of the server must pass the Upgrade and Connection headers.", err)
		return c
	}
	c.Message = "WebSockets work through the access URL"
	return c
}

// Echo is the server end of the WebSocket check.
func Echo(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), Timeout)
	defer cancel()
	typ, msg, err := conn.Read(ctx)
	if err != nil || len(msg) > 64 {
		return
	}
	conn.Write(ctx, typ, msg)
	conn.Close(websocket.StatusNormalClosure, "")
}

func storeCheck(ctx context.Context, check func(context.Context) error) tether.HealthCheck {
	c := tether.HealthCheck{Name: "store", Severity: tether.SeverityOK}
	if check == nil {
		return c
	}
	start := time.Now()
	if err := check(ctx); err != nil {
		c.Severity = tether.SeverityError
		c.Message = fmt.Sprintf("the database does not answer (%v): check the data directory's disk, or the PostgreSQL server", err)
		return c
	}
	c.Message = fmt.Sprintf("the database answers (%s)", time.Since(start).Round(time.Millisecond))
	return c
}

// stunResult is one STUN server's answer, in the stun check's details.
// udpRelayResult is one address of the UDP relay in the check's details.
type udpRelayResult struct {
	Address string `json:"address"`
	Error   string `json:"error,omitempty"`
}

// udpRelayCheck binds a test endpoint at each of the UDP relay's
// addresses, as a peer would.
func udpRelayCheck(ctx context.Context, probe func(context.Context) map[netip.AddrPort]error) tether.HealthCheck {
	c := tether.HealthCheck{Name: "udp_relay", Severity: tether.SeverityOK}
	if probe == nil {
		return c
	}
	got := probe(ctx)
	var results []udpRelayResult
	var failed, ok []string
	for ap, err := range got {
		r := udpRelayResult{Address: ap.String()}
		if err != nil {
			r.Error = err.Error()
			failed = append(failed, r.Address)
		} else {
			ok = append(ok, r.Address)
		}
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b udpRelayResult) int { return strings.Compare(a.Address, b.Address) })
	slices.Sort(failed)
	slices.Sort(ok)
	c.Details = results
	switch {
	case len(results) == 0:
		c.Severity = tether.SeverityWarning
		c.Message = "the UDP relay has no address to give peers: set --udp-relay-public-addresses"
	case len(ok) == 0:
		c.Severity = tether.SeverityWarning
		c.Message = fmt.Sprintf("the UDP relay did not answer at %s: peers that cannot connect directly fall back to DERP, which is much slower. Open UDP port %s inbound on this server and its firewalls (e.g. ufw allow %[2]s/udp, or the cloud's security group), or, if peers reach it at another address, set --udp-relay-public-addresses (a public address only the outside reaches may not answer this check from the server itself)",
			strings.Join(failed, ", "), portsOf(failed))
	case len(failed) > 0:
		c.Severity = tether.SeverityWarning
		c.Message = fmt.Sprintf("the UDP relay answered at %s but not at %s", strings.Join(ok, ", "), strings.Join(failed, ", "))
	default:
		c.Message = "the UDP relay answered at " + strings.Join(ok, ", ")
	}
	return c
}

// portsOf returns the distinct ports of the addresses ("IP:port"), joined.
func portsOf(addrs []string) string {
	var ports []string
	for _, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			ports = append(ports, strconv.Itoa(int(ap.Port())))
		}
	}
	slices.Sort(ports)
	return strings.Join(slices.Compact(ports), ",")
}

type stunResult struct {
	Server string `json:"server"`
	Seen   string `json:"seen,omitempty"`
	Error  string `json:"error,omitempty"`
}

func stunServers(ctx context.Context, m *tailcfg.DERPMap) tether.HealthCheck {
	c := tether.HealthCheck{Name: "stun", Severity: tether.SeverityOK}
	targets := derpmap.STUNServers(m)
	if len(targets) == 0 {
		c.Severity = tether.SeverityWarning
		c.Message = "no STUN servers are configured: peers behind NAT cannot learn their public address, so they go direct only when they reach each other's local addresses. Set --stun-addresses or enable the built-in STUN server."
		return c
	}
	results := make([]stunResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := t.Addr()
			results[i].Server = addr
			seen, err := stunProbe(ctx, addr)
			if err != nil {
				results[i].Error = err.Error()
				return
			}
			results[i].Seen = seen.String()
		}()
	}
	wg.Wait()
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
	}
	c.Details = results
	switch {
	case failed == len(results):
		c.Severity = tether.SeverityError
		c.Message = "no STUN server answered from the server: check that UDP to their ports is allowed, or that the built-in STUN server listens where the DERP map says (--derp-server-stun-addresses)."
	case failed > 0:
		c.Severity = tether.SeverityWarning
		c.Message = fmt.Sprintf("%d of %d STUN servers did not answer", failed, len(results))
	default:
		c.Message = fmt.Sprintf("all %d STUN servers answered", len(results))
	}
	return c
}

func stunProbe(ctx context.Context, addr string) (netip.AddrPort, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	tx := stun.NewTxID()
	buf := make([]byte, 1024)
	// UDP may drop a request: send a few.
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := conn.Write(stun.Request(tx)); err != nil {
			return netip.AddrPort{}, err
		}
		conn.SetReadDeadline(time.Now().Add(Timeout / 4))
		n, err := conn.Read(buf)
		if err != nil {
			if ctx.Err() != nil {
				return netip.AddrPort{}, errors.New("no answer")
			}
			continue
		}
		got, seen, err := stun.ParseResponse(buf[:n])
		if err == nil && got == tx {
			return seen, nil
		}
	}
	return netip.AddrPort{}, errors.New("no answer")
}

// derpRegions sends a packet between two fresh clients through the first
// relay node of each region that answers.
func derpRegions(ctx context.Context, o Options) []tether.DERPRegionHealth {
	m := o.DERPMap
	ids := m.RegionIDs()
	out := make([]tether.DERPRegionHealth, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		r := m.Regions[id]
		out[i] = tether.DERPRegionHealth{RegionID: id, Code: r.RegionCode, Name: r.RegionName}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var errs []error
			for _, n := range r.Nodes {
				if n.STUNOnly {
					continue
				}
				var meshKey key.DERPMesh
				if id == o.OwnRegionID || isProxyRegion(o, id) {
					meshKey = o.MeshKey
				}
				d, err := derpRoundTrip(ctx, nodeURL(n, o.DERPPlainHTTP), meshKey)
				if err == nil {
					ms := float64(d.Microseconds()) / 1000
					out[i].Severity, out[i].LatencyMS = tether.SeverityOK, &ms
					out[i].Message = fmt.Sprintf("round trip through node %s in %s", n.Name, d.Round(10*time.Microsecond))
					return
				}
				errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
			}
			out[i].Severity = tether.SeverityError
			out[i].Message = fmt.Sprintf("no node relayed a packet (%v): check that the relay runs and that its host name and port are reachable from here", errors.Join(errs...))
		}()
	}
	wg.Wait()
	return out
}

func nodeURL(n *tailcfg.DERPNode, plainHTTP bool) string {
	scheme, port := "https", 443
	if plainHTTP {
		scheme, port = "http", 80
	}
	if n.DERPPort != 0 {
		port = n.DERPPort
	}
	host := n.HostName
	if ip, err := netip.ParseAddr(n.IPv4); err == nil {
		host = ip.String()
	}
	return fmt.Sprintf("%s://%s/derp", scheme, net.JoinHostPort(host, strconv.Itoa(port)))
}

// derpRoundTrip connects two clients to a relay and times a packet between
// them. meshKey, if set, is the relay's: clients with fresh keys are no
// peers of the deployment, which our own relays admit only with it.
func derpRoundTrip(ctx context.Context, u string, meshKey key.DERPMesh) (time.Duration, error) {
	return derpBetween(ctx, u, u, meshKey)
}

// derpBetween connects a client to the relay at from and another to the
// relay at to, and times a packet from the first to the second. With two
// replicas' relays, the packet crosses their mesh.
func derpBetween(ctx context.Context, from, to string, meshKey key.DERPMesh) (time.Duration, error) {
	netMon := netmon.NewStatic()
	quiet := func(string, ...any) {}
	a, err := derphttp.NewClient(key.NewNode(), from, quiet, netMon)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	b, err := derphttp.NewClient(key.NewNode(), to, quiet, netMon)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	a.MeshKey, b.MeshKey = meshKey, meshKey
	if err := a.Connect(ctx); err != nil {
		return 0, err
	}
	if err := b.Connect(ctx); err != nil {
		return 0, err
	}
	go func() {
		<-ctx.Done()
		a.Close()
		b.Close()
	}()
	// Retry the packet until b is registered with the relay.
	got := make(chan error, 1)
	go func() {
		for {
			m, err := b.Recv()
			if err != nil {
				got <- err
				return
			}
			if p, ok := m.(derp.ReceivedPacket); ok && p.Source == a.SelfPublicKey() {
				got <- nil
				return
			}
		}
	}()
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := a.Send(b.SelfPublicKey(), []byte("tether health")); err != nil {
			return 0, err
		}
		select {
		case err := <-got:
			if err != nil {
				return 0, err
			}
			return time.Since(start), nil
		case <-ctx.Done():
			return 0, errors.New("no packet came through in time")
		case <-tick.C:
			start = time.Now()
		}
	}
}

// replicasCheck sends a packet from a client of our relay to a client of
// each other replica's relay: it arrives only if their mesh works.
func replicasCheck(ctx context.Context, o Options) tether.HealthCheck {
	c := tether.HealthCheck{Name: "replicas", Severity: tether.SeverityOK}
	if o.Replicas == nil {
		return c
	}
	peers := o.Replicas()
	if len(peers) == 0 {
		c.Message = "no other replica is running"
		return c
	}
	if o.SelfRelayURL == "" {
		c.Severity = tether.SeverityWarning
		c.Message = fmt.Sprintf("%s, but they cannot reach this replica's relay: set --derp-server-relay-url here", otherReplicas(len(peers)))
		return c
	}
	problems := make([]string, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		if p.RelayURL == "" {
			problems[i] = fmt.Sprintf("%s has no relay URL the others can reach (set its --derp-server-relay-url)", p.Hostname)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := derpBetween(ctx, strings.TrimSuffix(o.SelfRelayURL, "/")+"/derp", strings.TrimSuffix(p.RelayURL, "/")+"/derp", o.MeshKey); err != nil {
				problems[i] = fmt.Sprintf("%s (relay %s): %v", p.Hostname, p.RelayURL, err)
			}
		}()
	}
	wg.Wait()
	problems = slices.DeleteFunc(problems, func(s string) bool { return s == "" })
	if len(problems) == 0 {
		c.Message = fmt.Sprintf("%s; relayed packets reach each of them", otherReplicas(len(peers)))
		return c
	}
	c.Severity = tether.SeverityWarning
	c.Message = fmt.Sprintf("relayed connections between clients and agents on different replicas fail for %d of %s: %s. "+
		"Check each replica's --derp-server-relay-url and that replicas can reach each other there.",
		len(problems), otherReplicas(len(peers)), strings.Join(problems, "; "))
	return c
}

func otherReplicas(n int) string {
	if n == 1 {
		return "1 other replica"
	}
	return fmt.Sprintf("%d other replicas", n)
}

// isProxyRegion reports whether region id is a workspace proxy's, whose
// relay trusts the deployment's mesh key.
func isProxyRegion(o Options, id int) bool {
	if o.Proxies == nil {
		return false
	}
	for _, p := range o.Proxies() {
		if p.RegionID == id {
			return true
		}
	}
	return false
}

// proxiesCheck checks each workspace proxy from here: that it heartbeats,
// that this server reaches it, and that a packet crosses from the built-in
// relay to the proxy's through their mesh.
func proxiesCheck(ctx context.Context, hc *http.Client, o Options, proxies []Proxy) tether.HealthCheck {
	c := tether.HealthCheck{Name: "workspace_proxies", Severity: tether.SeverityOK}
	details := make([]tether.WorkspaceProxyHealth, len(proxies))
	var wg sync.WaitGroup
	for i, p := range proxies {
		d := &details[i]
		*d = tether.WorkspaceProxyHealth{Name: p.Name, URL: p.URL, Version: p.Version, Healthy: p.Healthy}
		if !p.LastHeartbeat.IsZero() {
			hb := p.LastHeartbeat.UTC()
			d.LastHeartbeat = &hb
		}
		if !p.Healthy {
			if p.LastHeartbeat.IsZero() {
				d.Message = "it has never started: run `tether wsproxy server` with its token"
			} else {
				d.Message = fmt.Sprintf("no heartbeat since %s: it is down, or cannot reach this server", p.LastHeartbeat.UTC().Format(time.RFC3339))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.URL, "/")+"/healthz", nil)
			if err == nil {
				var resp *http.Response
				if resp, err = hc.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("it answered %s", resp.Status)
					}
				}
			}
			d.Reachable = err == nil
			if err != nil {
				d.Message = fmt.Sprintf("this server cannot reach it at %s (%v); users' browsers may still", p.URL, err)
				return
			}
			if o.OwnRegionID == 0 {
				d.Message = "reachable; this server runs no relay to mesh with"
				return
			}
			rtt, err := derpBetween(ctx, strings.TrimSuffix(o.AccessURL.String(), "/")+"/derp", strings.TrimSuffix(p.URL, "/")+"/derp", o.MeshKey)
			if err != nil {
				d.Message = fmt.Sprintf("reachable, but a packet did not cross from this server's relay to the proxy's (%v): peers homed on different regions may not connect", err)
				return
			}
			ms := float64(rtt.Microseconds()) / 1000
			d.MeshRTTMS = &ms
			d.Message = fmt.Sprintf("reachable; relay mesh round trip %s", rtt.Round(10*time.Microsecond))
		}()
	}
	wg.Wait()
	bad := 0
	for _, d := range details {
		if !d.Healthy || !d.Reachable || d.MeshRTTMS == nil && o.OwnRegionID != 0 {
			bad++
		}
	}
	c.Details = details
	if bad == 0 {
		c.Message = fmt.Sprintf("all %d workspace proxies are healthy", len(proxies))
		return c
	}
	c.Severity = tether.SeverityWarning
	var names []string
	for _, d := range details {
		if !d.Healthy || !d.Reachable || d.MeshRTTMS == nil && o.OwnRegionID != 0 {
			names = append(names, d.Name+": "+d.Message)
		}
	}
	c.Message = fmt.Sprintf("%d of %d workspace proxies have a problem; terminals and apps open on the others and the primary. %s",
		bad, len(proxies), strings.Join(names, "; "))
	return c
}
