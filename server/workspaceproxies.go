package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/derpmap"
	"github.com/tetherdev/tether/server/healthcheck"
	"github.com/tetherdev/tether/store"
)

// Workspace proxies, as the primary sees them: admins register them
// (`tether wsproxy create`), each running proxy heartbeats with its token,
// and every replica reads the registered proxies from the store every
// proxyPollInterval. A proxy that heartbeat within proxyHealthyWithin is
// healthy: its relay region is in the DERP map every peer gets, the
// primary's relay meshes with it, and the dashboard offers it. One that
// stops drops out of all three at the next poll.
//
// What a proxy may do with its token is narrow: heartbeat, coordinate its
// own tunnels to agents (as the primary's agentnet does in process), and
// ask whether a relay client's key belongs to the deployment. Users reach
// a proxy through a hand-off token the primary signs (package handoff;
// proxyAuthRedirect).

const (
	// proxyPollInterval is how often each replica reads the proxies.
	proxyPollInterval = 2 * time.Second
	// proxyHealthyWithin is how recent a proxy's last heartbeat must be
	// for it to count as healthy: three of its heartbeats
	// (ProxyHeartbeatInterval), so one lost request is not an outage,
	// and with the poll, a silent proxy is unhealthy well within 30 s.
	proxyHealthyWithin = 3 * ProxyHeartbeatInterval
	// ProxyHeartbeatInterval is how often a proxy heartbeats.
	ProxyHeartbeatInterval = 5 * time.Second

	// handoffKeySecret names the deployment secret from which the
	// hand-off signing key derives (an Ed25519 seed).
	handoffKeySecret = "workspace-proxy-handoff-key"

	// maxEndedSessionsAsked bounds the sessions a heartbeat asks about.
	maxEndedSessionsAsked = 4096
)

// proxyRegions is the primary's view of the registered proxies, as last
// read from the store, and the DERP map built from it.
type proxyRegions struct {
	kick chan struct{} // a heartbeat arrived: read again now

	mu      sync.Mutex
	base    *tailcfg.DERPMap         // the map without proxies; guarded by mu
	current *tailcfg.DERPMap         // base plus healthy proxies; guarded by mu
	proxies []store.WorkspaceProxy   // guarded by mu
	healthy map[uuid.UUID]bool       // guarded by mu
	streams map[uuid.UUID][]*proxyWS // open coordination streams by proxy; guarded by mu
}

// proxyWS is one coordination stream a proxy opened, so that a proxy whose
// token is revoked loses its tunnels' coordination at once.
type proxyWS struct{ stream *coordinator.WebSocket }

// derpMap is the DERP map peers get now.
func (s *Server) derpMap() *tailcfg.DERPMap {
	s.proxies.mu.Lock()
	defer s.proxies.mu.Unlock()
	return s.proxies.current
}

// connectionInfo is what peers learn before joining the tunnel network.
func (s *Server) connectionInfo() tether.ConnectionInfo {
	ci := s.connInfo
	ci.DERPMap = s.derpMap()
	return ci
}

// isHealthy reports whether a proxy's last heartbeat is recent.
func (s *Server) isHealthy(p store.WorkspaceProxy) bool {
	return p.URL != "" && !p.LastHeartbeat.IsZero() && s.now().Sub(p.LastHeartbeat) < proxyHealthyWithin
}

// watchProxies reads the proxies now and then, and when the healthy set
// changes, hands the new DERP map to peers and the new relays to the mesh.
func (s *Server) watchProxies() {
	defer s.wg.Done()
	t := time.NewTicker(proxyPollInterval)
	defer t.Stop()
	for {
		s.refreshProxies(s.ctx)
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.proxies.kick:
		}
	}
}

// refreshProxies reads the proxies and applies what changed.
func (s *Server) refreshProxies(ctx context.Context) {
	ps, err := s.store.ListWorkspaceProxies(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("read workspace proxies", slog.Any("err", err))
		}
		return
	}
	healthy := map[uuid.UUID]bool{}
	var regions []*tailcfg.DERPRegion
	var relays []tether.RelayPeer
	for _, p := range ps {
		if !s.isHealthy(p) {
			continue
		}
		r, err := proxyRegion(p)
		if err != nil {
			continue // its heartbeat checked the URL; a bad one serves no region
		}
		healthy[p.ID] = true
		regions = append(regions, r)
		relays = append(relays, tether.RelayPeer{ID: "proxy " + p.ID.String(), URL: p.URL})
	}
	s.proxies.mu.Lock()
	changed := len(healthy) != len(s.proxies.healthy) || !sameRegions(s.proxies.current, s.proxies.base, regions)
	for id := range healthy {
		if !s.proxies.healthy[id] {
			changed = true
		}
	}
	s.proxies.proxies, s.proxies.healthy = ps, healthy
	var m *tailcfg.DERPMap
	if changed {
		m = withRegions(s.proxies.base, regions)
		s.proxies.current = m
	}
	s.proxies.mu.Unlock()
	if !changed {
		return
	}
	s.logger.Info("workspace proxy regions changed", slog.Int("healthy_proxies", len(regions)))
	s.coord.PushDERPMap(m)
	s.agentNet.SetDERPMap(m)
	if s.onProxyRelays != nil {
		s.onProxyRelays(relays)
	}
}

// proxyRegion is the DERP region a proxy's relay serves.
func proxyRegion(p store.WorkspaceProxy) (*tailcfg.DERPRegion, error) {
	u, err := url.Parse(p.URL)
	if err != nil || u.Host == "" {
		return nil, errors.New("bad proxy URL")
	}
	name := p.DisplayName
	if name == "" {
		name = p.Name
	}
	return derpmap.Builtin{AccessURL: u, RegionID: p.RegionID, Code: p.Name, Name: name, STUNPort: p.STUNPort}.Region(), nil
}

// withRegions returns base with regions added (a proxy's region ID never
// collides with base's: the store allocates them above the built-in
// relay's and Tailscale-format maps' IDs; one that does is left out).
func withRegions(base *tailcfg.DERPMap, regions []*tailcfg.DERPRegion) *tailcfg.DERPMap {
	m := base.Clone()
	for _, r := range regions {
		if _, taken := m.Regions[r.RegionID]; !taken {
			m.Regions[r.RegionID] = r
		}
	}
	return m
}

// sameRegions reports whether current already is base with regions.
func sameRegions(current, base *tailcfg.DERPMap, regions []*tailcfg.DERPRegion) bool {
	want := withRegions(base, regions)
	if len(want.Regions) != len(current.Regions) {
		return false
	}
	for id, r := range want.Regions {
		c, ok := current.Regions[id]
		if !ok || len(c.Nodes) != len(r.Nodes) {
			return false
		}
		for i := range r.Nodes {
			if *c.Nodes[i] != *r.Nodes[i] {
				return false
			}
		}
	}
	return true
}

// proxyView is a proxy as admins see it.
func (s *Server) proxyView(p store.WorkspaceProxy) tether.WorkspaceProxy {
	v := tether.WorkspaceProxy{
		Name: p.Name, DisplayName: p.DisplayName, Icon: p.Icon, URL: p.URL, WildcardURL: p.WildcardURL,
		RegionID: p.RegionID, Healthy: s.isHealthy(p), Version: p.Version, CreatedAt: p.CreatedAt,
	}
	if !p.LastHeartbeat.IsZero() {
		hb := p.LastHeartbeat
		v.LastHeartbeat = &hb
	}
	return v
}

// handoffKey returns the key that signs hand-off tokens: the same on every
// replica, made by the first that asks.
func (s *Server) handoffKey(ctx context.Context) (ed25519.PrivateKey, error) {
	s.handoffOnce.Lock()
	defer s.handoffOnce.Unlock()
	if s.handoffPriv != nil {
		return s.handoffPriv, nil
	}
	seed, err := s.store.DeploymentSecret(ctx, handoffKeySecret, func() []byte {
		b := make([]byte, ed25519.SeedSize)
		rand.Read(b)
		return b
	})
	if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("the stored hand-off key is damaged")
	}
	s.handoffPriv = ed25519.NewKeyFromSeed(seed)
	return s.handoffPriv, nil
}

// Admin endpoints.

func (s *Server) postWorkspaceProxy(w http.ResponseWriter, r *http.Request, u store.User) error {
	if u.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.CreateWorkspaceProxyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := tether.ValidateName("workspace proxy", req.Name); err != nil {
		return err
	}
	if req.DisplayName == "" {
		req.DisplayName = req.Name
	}
	if len(req.DisplayName) > 64 || len(req.Icon) > 256 {
		return tether.Errorf(tether.EINVALID, "--display-name takes at most 64 characters, --icon at most 256")
	}
	token := newToken()
	p, err := s.store.CreateWorkspaceProxy(r.Context(), store.WorkspaceProxy{
		ID: uuid.New(), Name: req.Name, DisplayName: req.DisplayName, Icon: req.Icon,
		TokenHash: store.HashToken(token), CreatedAt: s.now(),
	})
	if err != nil {
		return storeError(err, "workspace proxy "+req.Name)
	}
	s.logger.Info("workspace proxy created", slog.String("proxy", p.Name), slog.String("by", u.Username))
	writeJSON(w, http.StatusCreated, tether.WorkspaceProxyTokenResponse{Proxy: s.proxyView(p), Token: token})
	return nil
}

func (s *Server) getWorkspaceProxies(w http.ResponseWriter, r *http.Request, u store.User) error {
	if u.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	ps, err := s.store.ListWorkspaceProxies(r.Context())
	if err != nil {
		return err
	}
	out := make([]tether.WorkspaceProxy, 0, len(ps))
	for _, p := range ps {
		out = append(out, s.proxyView(p))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) adminProxy(r *http.Request, u store.User) (store.WorkspaceProxy, error) {
	if u.Role != tether.RoleAdmin {
		return store.WorkspaceProxy{}, errAdminOnly
	}
	name := r.PathValue("name")
	p, err := s.store.WorkspaceProxyByName(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return p, tether.Errorf(tether.ENOTFOUND, "workspace proxy %s not found: `tether wsproxy ls` lists them", name)
	}
	return p, err
}

func (s *Server) deleteWorkspaceProxy(w http.ResponseWriter, r *http.Request, u store.User) error {
	p, err := s.adminProxy(r, u)
	if err != nil {
		return err
	}
	if err := s.store.DeleteWorkspaceProxy(r.Context(), p.ID); err != nil {
		return storeError(err, "workspace proxy "+p.Name)
	}
	s.revokeProxyStreams(p.ID, "the workspace proxy was deleted")
	s.kickProxies()
	s.logger.Info("workspace proxy deleted", slog.String("proxy", p.Name), slog.String("by", u.Username))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) postWorkspaceProxyToken(w http.ResponseWriter, r *http.Request, u store.User) error {
	p, err := s.adminProxy(r, u)
	if err != nil {
		return err
	}
	token := newToken()
	if err := s.store.SetWorkspaceProxyTokenHash(r.Context(), p.ID, store.HashToken(token)); err != nil {
		return storeError(err, "workspace proxy "+p.Name)
	}
	s.revokeProxyStreams(p.ID, "the workspace proxy's token was regenerated")
	s.logger.Info("workspace proxy token regenerated", slog.String("proxy", p.Name), slog.String("by", u.Username))
	writeJSON(w, http.StatusOK, tether.WorkspaceProxyTokenResponse{Proxy: s.proxyView(p), Token: token})
	return nil
}

// getRegions lists where the dashboard may open terminals and apps: the
// primary first, then every healthy proxy.
func (s *Server) getRegions(w http.ResponseWriter, r *http.Request, u store.User) error {
	out := []tether.Region{{
		Name: "primary", DisplayName: "Primary", URL: s.accessURL.String(),
		WildcardURL: s.wildcard.String(), Primary: true, Healthy: true,
	}}
	s.proxies.mu.Lock()
	ps := slices.Clone(s.proxies.proxies)
	s.proxies.mu.Unlock()
	for _, p := range ps {
		if !s.isHealthy(p) {
			continue
		}
		out = append(out, tether.Region{Name: p.Name, DisplayName: p.DisplayName, Icon: p.Icon,
			URL: p.URL, WildcardURL: p.WildcardURL, Healthy: true})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// serveLatency answers at once, to pages of any origin: the dashboard
// times it on the primary and on each proxy. It says nothing but "here".
func serveLatency(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cache-Control", "no-store")
	h.Set("Timing-Allow-Origin", "*")
	w.WriteHeader(http.StatusNoContent)
}

// The proxy's own endpoints.

type proxyHandler func(http.ResponseWriter, *http.Request, store.WorkspaceProxy) error

func (s *Server) proxyRoute(pattern string, h proxyHandler) route {
	return route{pattern: pattern, auth: authProxy, handler: s.public(func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticateProxy(r)
		if err != nil {
			return err
		}
		return h(w, r, p)
	})}
}

// authenticateProxy returns the proxy whose token the request carries.
func (s *Server) authenticateProxy(r *http.Request) (store.WorkspaceProxy, error) {
	token := r.Header.Get(tether.ProxyTokenHeader)
	if token == "" {
		return store.WorkspaceProxy{}, tether.Errorf(tether.EUNAUTHORIZED, "workspace proxy token missing: pass --proxy-token as `tether wsproxy create` printed it")
	}
	p, err := s.store.WorkspaceProxyByTokenHash(r.Context(), store.HashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return p, tether.Errorf(tether.EUNAUTHORIZED, "workspace proxy token is invalid: the proxy was deleted or its token regenerated")
	}
	return p, err
}

// postProxyHeartbeat records what a proxy says of itself and tells it
// what it needs to serve.
func (s *Server) postProxyHeartbeat(w http.ResponseWriter, r *http.Request, p store.WorkspaceProxy) error {
	var req tether.ProxyHeartbeatRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	u, err := url.Parse(req.AccessURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return tether.Errorf(tether.EINVALID, "the proxy's --access-url %q must be an http:// or https:// URL with a host", req.AccessURL)
	}
	accessURL := u.Scheme + "://" + u.Host
	var wildcard string
	if req.WildcardURL != "" {
		wc, err := parseWildcard(req.WildcardURL, u)
		if err != nil {
			return tether.Errorf(tether.EINVALID, "the proxy's %v", err)
		}
		wildcard = wc.String()
	}
	if req.STUNPort < 0 || req.STUNPort > 65535 || len(req.Version) > 64 || len(req.Sessions) > maxEndedSessionsAsked {
		return tether.Errorf(tether.EINVALID, "bad heartbeat")
	}
	wasHealthy := s.isHealthy(p)
	if err := s.store.WorkspaceProxyHeartbeat(r.Context(), p.ID, store.ProxyHeartbeat{
		URL: accessURL, WildcardURL: wildcard, Version: req.Version, STUNPort: req.STUNPort, At: s.now(),
	}); err != nil {
		return storeError(err, "workspace proxy "+p.Name)
	}
	if !wasHealthy || p.URL != accessURL || p.STUNPort != req.STUNPort {
		s.logger.Info("workspace proxy is up", slog.String("proxy", p.Name), slog.String("url", accessURL))
		s.kickProxies()
	}
	priv, err := s.handoffKey(r.Context())
	if err != nil {
		return err
	}
	var ended []string
	for _, h := range req.Sessions {
		if _, _, err := s.sessionUser(r.Context(), h); err != nil {
			if tether.ErrorCode(err) != tether.EUNAUTHORIZED && tether.ErrorCode(err) != tether.EFORBIDDEN {
				return err
			}
			ended = append(ended, h)
		}
	}
	p.URL, p.STUNPort = accessURL, req.STUNPort
	region, err := proxyRegion(p)
	if err != nil {
		return err
	}
	resp := tether.ProxyHeartbeatResponse{
		ID: p.ID.String(), Name: p.Name, RegionID: p.RegionID, PrimaryURL: s.accessURL.String(),
		HandoffKey:          priv.Public().(ed25519.PublicKey),
		MeshPeers:           s.relaysFor(p.ID),
		DERPMap:             withRegions(s.derpMap(), []*tailcfg.DERPRegion{region}),
		DisableDirect:       s.connInfo.DisableDirect,
		DERPForceWebSockets: s.connInfo.DERPForceWebSockets,
		BrowserDirect:       s.browserDirect != nil,
		EndedSessions:       ended,
	}
	if !s.derpMeshKey.IsZero() {
		resp.MeshKey = s.derpMeshKey.String()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// relaysFor lists the relays a proxy's relay meshes with: the primary's
// (each replica's), and the other healthy proxies'.
func (s *Server) relaysFor(self uuid.UUID) []tether.RelayPeer {
	var out []tether.RelayPeer
	if s.hasRelay {
		if s.replicas != nil {
			if s.selfRelayURL != "" {
				out = append(out, tether.RelayPeer{ID: "primary " + s.selfRelayURL, URL: s.selfRelayURL})
			}
			for _, r := range s.replicas() {
				if r.RelayURL != "" {
					out = append(out, tether.RelayPeer{ID: "primary " + r.RelayURL, URL: r.RelayURL})
				}
			}
		} else {
			out = append(out, tether.RelayPeer{ID: "primary", URL: s.accessURL.String()})
		}
	}
	s.proxies.mu.Lock()
	defer s.proxies.mu.Unlock()
	for _, p := range s.proxies.proxies {
		if p.ID != self && s.proxies.healthy[p.ID] {
			out = append(out, tether.RelayPeer{ID: "proxy " + p.ID.String(), URL: p.URL})
		}
	}
	return out
}

func (s *Server) kickProxies() {
	select {
	case s.proxies.kick <- struct{}{}:
	default:
	}
}

// revokeProxyStreams ends the coordination of a proxy whose token is gone.
func (s *Server) revokeProxyStreams(id uuid.UUID, reason string) {
	s.proxies.mu.Lock()
	streams := slices.Clone(s.proxies.streams[id])
	s.proxies.mu.Unlock()
	for _, pw := range streams {
		pw.stream.Revoke(reason)
	}
}

// maxNodeKeyWait bounds how long a proxy's relay waits for a key to
// become known: within the relay's own admission wait.
const maxNodeKeyWait = 4 * time.Second

// getProxyNodeKey tells a proxy's relay whether a client's key belongs to
// a peer of the deployment, waiting up to ?wait= for it to become known.
func (s *Server) getProxyNodeKey(w http.ResponseWriter, r *http.Request, _ store.WorkspaceProxy) error {
	var k key.NodePublic
	if err := k.UnmarshalText([]byte(r.PathValue("key"))); err != nil {
		return tether.Errorf(tether.EINVALID, "not a node key")
	}
	known := s.coord.KnowsNodeKey(k)
	if !known {
		if ms, err := strconv.Atoi(r.URL.Query().Get("wait_ms")); err == nil && ms > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), min(time.Duration(ms)*time.Millisecond, maxNodeKeyWait))
			known = s.coord.AwaitNodeKey(ctx, k)
			cancel()
		}
	}
	writeJSON(w, http.StatusOK, tether.NodeKeyKnown{Known: known})
	return nil
}

// proxyByHost finds the healthy proxy that serves a host: its access
// URL's host, or one of its subdomain app hosts.
func (s *Server) proxyByHost(host string) (p store.WorkspaceProxy, wc *wildcard, ok bool) {
	s.proxies.mu.Lock()
	ps := slices.Clone(s.proxies.proxies)
	s.proxies.mu.Unlock()
	host = strings.ToLower(host)
	for _, p := range ps {
		u, err := url.Parse(p.URL)
		if err != nil || !s.isHealthy(p) {
			continue
		}
		wc, _ := parseWildcard(p.WildcardURL, u)
		if strings.ToLower(u.Host) == host {
			return p, wc, true
		}
		if _, _, _, isApp := wc.appHost(host); isApp && strings.EqualFold(wc.hostPort(hostOnly(host)), host) {
			return p, wc, true
		}
	}
	return store.WorkspaceProxy{}, nil, false
}

func hostOnly(hostport string) string {
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return hostport[:i]
	}
	return hostport
}

// ProxyOrigins are the origins of the healthy workspace proxies, which the
// dashboard's pages may connect to (site.HandlerWith).
func (s *Server) ProxyOrigins() []string {
	s.proxies.mu.Lock()
	ps := slices.Clone(s.proxies.proxies)
	s.proxies.mu.Unlock()
	var out []string
	for _, p := range ps {
		if s.isHealthy(p) {
			out = append(out, p.URL)
		}
	}
	return out
}

// healthProxies lists the proxies for the health report, as last read.
func (s *Server) healthProxies() []healthcheck.Proxy {
	s.proxies.mu.Lock()
	ps := slices.Clone(s.proxies.proxies)
	s.proxies.mu.Unlock()
	out := make([]healthcheck.Proxy, 0, len(ps))
	for _, p := range ps {
		out = append(out, healthcheck.Proxy{Name: p.Name, URL: p.URL, RegionID: p.RegionID, Version: p.Version,
			Healthy: s.isHealthy(p), LastHeartbeat: p.LastHeartbeat})
	}
	return out
}
