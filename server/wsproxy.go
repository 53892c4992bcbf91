package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/server/agentnet"
	"github.com/tetherdev/tether/store"
)

// A workspace proxy (`tether wsproxy server`) is a server without a store
// near a group of users: it serves the web terminal and apps over tunnels
// of its own to the agents, coordinated by the primary, and runs a relay
// region of its own (the command wires that). It knows users only through
// the hand-off tokens the primary signs (package handoff): each redeemed
// token becomes a scope of a grant, kept in memory under a host-only
// cookie of the proxy's. It never sees a session token or a password.
//
// The proxy reuses the primary's code for what it serves (proxyApp,
// bridgeTerminal, the wildcard and cookie rules) through a Server made
// without a store or a coordinator (web): those paths never touch either
// when they are nil.

// ProxyOptions configure a Proxy.
type ProxyOptions struct {
	Logger *slog.Logger
	// PrimaryURL is the primary's access URL; Token the proxy's token.
	PrimaryURL *url.URL
	Token      string
	// AccessURL is where browsers reach the proxy, and WildcardAccessURL
	// the pattern of its subdomain app hosts ("" for none).
	AccessURL         *url.URL
	WildcardAccessURL string
	Version           string
	// STUNPort is the proxy's STUN server's port, 0 for none.
	STUNPort int
	// DERP serves the proxy's relay at /derp; nil for none.
	DERP http.Handler
	// Site serves the dashboard's files: the proxy serves its terminal
	// page.
	Site http.Handler
	// HTTPClient reaches the primary; nil means a client of its own.
	HTTPClient *http.Client
	// Registered is the primary's answer to the proxy's first heartbeat
	// (ProxyHeartbeat): the proxy starts from it.
	Registered tether.ProxyHeartbeatResponse
	// OnHeartbeat is told every answer of the primary after the first,
	// for the relay's mesh; nil ignores them.
	OnHeartbeat func(tether.ProxyHeartbeatResponse)
	// HeartbeatInterval is the time between heartbeats; zero means
	// ProxyHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Now is the clock hand-off tokens are checked by; nil means
	// time.Now.
	Now func() time.Time
}

// ErrProxyRevoked is why Run ends when the primary no longer knows the
// proxy's token.
var ErrProxyRevoked = errors.New("the primary refused the proxy's token: it was regenerated, or the proxy deleted (`tether wsproxy ls`)")

// Proxy is a running workspace proxy. Create it with NewProxy, serve its
// Handler, Run its heartbeats, and Close it.
type Proxy struct {
	opts       ProxyOptions
	logger     *slog.Logger
	web        *Server // the terminal and app serving, without store or coordinator
	agentNet   *agentnet.Net
	mux        *http.ServeMux
	httpClient *http.Client
	id         uuid.UUID
	key        ed25519.PublicKey // checks hand-off tokens
	wildcard   *wildcard
	redeemed   handoff.Redeemed
	grants     proxyGrants
	// iceServers are the ICE servers of direct web terminals, from the
	// primary's last answer; nil while the primary turns them off.
	iceServers atomic.Pointer[[]string]
}

// NewProxy returns a proxy for opts.
func NewProxy(opts ProxyOptions) (*Proxy, error) {
	reg := opts.Registered
	id, err := uuid.Parse(reg.ID)
	if err != nil || len(reg.HandoffKey) != ed25519.PublicKeySize || reg.DERPMap == nil {
		return nil, errors.New("the primary's answer to the proxy's registration is incomplete: run the same version of tether on both")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = ProxyHeartbeatInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	wc, err := parseWildcard(opts.WildcardAccessURL, opts.AccessURL)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		opts: opts, logger: logger, httpClient: hc, id: id,
		key: ed25519.PublicKey(reg.HandoffKey), wildcard: wc,
		grants: proxyGrants{byHash: map[string]*proxyGrant{}},
	}
	p.agentNet, err = agentnet.New(agentnet.Options{
		Logger:              logger.With(slog.String("component", "agentnet")),
		Dial:                p.dialCoordinate,
		DERPMap:             reg.DERPMap,
		BlockEndpoints:      reg.DisableDirect,
		DERPPlainHTTP:       opts.PrimaryURL.Scheme == "http",
		DERPForceWebSockets: reg.DERPForceWebSockets,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.web = &Server{
		logger:    logger,
		accessURL: opts.PrimaryURL, // error pages link to the dashboard
		version:   opts.Version,
		now:       func() time.Time { return time.Now().UTC() },
		agentNet:  p.agentNet,
		wildcard:  wc,
		ctx:       ctx,
		cancel:    cancel,
	}
	p.web.browserDirect = func() []string {
		if ice := p.iceServers.Load(); ice != nil {
			return *ice
		}
		return nil
	}
	p.setDirect(reg)
	p.routes()
	return p, nil
}

// setDirect follows the primary's setting for direct web terminals.
func (p *Proxy) setDirect(resp tether.ProxyHeartbeatResponse) {
	if !resp.BrowserDirect {
		p.iceServers.Store(nil)
		return
	}
	ice := iceServers(resp.DERPMap)
	p.iceServers.Store(&ice)
}

// ProxyHeartbeat sends one heartbeat to the primary: the first registers
// the proxy.
func ProxyHeartbeat(ctx context.Context, hc *http.Client, primary *url.URL, token string, req tether.ProxyHeartbeatRequest) (tether.ProxyHeartbeatResponse, error) {
	var resp tether.ProxyHeartbeatResponse
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, primary.String()+"/api/v2/workspaceproxies/me/heartbeat", bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set(tether.ProxyTokenHeader, token)
	res, err := hc.Do(hr)
	if err != nil {
		return resp, fmt.Errorf("reach the primary at %s: %w", primary, err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		return resp, ErrProxyRevoked
	}
	if res.StatusCode != http.StatusOK {
		var e tether.ErrorResponse
		b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return resp, fmt.Errorf("the primary refused the heartbeat: %s", e.Message)
		}
		return resp, fmt.Errorf("the primary refused the heartbeat: %s", res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&resp); err != nil {
		return resp, fmt.Errorf("read the primary's heartbeat answer: %w", err)
	}
	return resp, nil
}

// heartbeatRequest is what the proxy says of itself now.
func (p *Proxy) heartbeatRequest() tether.ProxyHeartbeatRequest {
	return tether.ProxyHeartbeatRequest{
		AccessURL:   p.opts.AccessURL.String(),
		WildcardURL: p.wildcard.String(),
		Version:     p.opts.Version,
		STUNPort:    p.opts.STUNPort,
		Sessions:    p.grants.sessions(),
	}
}

// HeartbeatRequest is the proxy's first heartbeat, before NewProxy.
func HeartbeatRequest(accessURL *url.URL, wildcardAccessURL, version string, stunPort int) (tether.ProxyHeartbeatRequest, error) {
	wc, err := parseWildcard(wildcardAccessURL, accessURL)
	if err != nil {
		return tether.ProxyHeartbeatRequest{}, err
	}
	return tether.ProxyHeartbeatRequest{AccessURL: accessURL.String(), WildcardURL: wc.String(), Version: version, STUNPort: stunPort}, nil
}

// Run heartbeats until ctx ends, or until the primary refuses the proxy's
// token (ErrProxyRevoked): the proxy must then stop serving. A primary
// that cannot be reached is retried at every interval; meanwhile the proxy
// keeps serving what it was granted.
func (p *Proxy) Run(ctx context.Context) error {
	t := time.NewTicker(p.opts.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, p.opts.HeartbeatInterval*3)
		resp, err := ProxyHeartbeat(hctx, p.httpClient, p.opts.PrimaryURL, p.opts.Token, p.heartbeatRequest())
		cancel()
		if errors.Is(err, ErrProxyRevoked) {
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				p.logger.Warn("heartbeat to the primary failed; retrying", slog.Any("err", err))
			}
			failing = true
			continue
		}
		if failing {
			p.logger.Info("the primary answers heartbeats again")
		}
		failing = false
		p.agentNet.SetDERPMap(resp.DERPMap)
		p.setDirect(resp)
		for _, h := range resp.EndedSessions {
			p.grants.endSession(h, "your session at the primary ended: sign in again")
		}
		if p.opts.OnHeartbeat != nil {
			p.opts.OnHeartbeat(resp)
		}
	}
}

// SetDERPMap gives the proxy's tunnels a new relay map.
func (p *Proxy) SetDERPMap(m *tailcfg.DERPMap) { p.agentNet.SetDERPMap(m) }

// Close ends every terminal, app connection and tunnel.
func (p *Proxy) Close() error {
	p.grants.endAll("the workspace proxy is shutting down")
	return p.web.Close()
}

// dialCoordinate opens a coordination WebSocket to the primary for one of
// the proxy's tunnel peers.
func (p *Proxy) dialCoordinate(ctx context.Context, clientID, agentID uuid.UUID) (*websocket.Conn, error) {
	u := *p.opts.PrimaryURL
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path = "/api/v2/workspaceproxies/me/coordinate"
	u.RawQuery = url.Values{"version": {tether.CoordinateProtocolVersion}, "id": {clientID.String()}, "agent": {agentID.String()}}.Encode()
	// The primary wants to see the grants the tunnel rests on (see
	// workspaceproxies_coordinate.go); each dial shows the current ones.
	h := http.Header{tether.ProxyTokenHeader: {p.opts.Token}}
	for _, g := range p.grants.forWorkspace(agentID) {
		h.Add(tether.ProxyGrantHeader, g)
	}
	conn, res, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPClient: p.httpClient,
		HTTPHeader: h,
	})
	if err != nil {
		if res != nil && (res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden || res.StatusCode == http.StatusNotFound) {
			return nil, coordclient.Permanent(fmt.Errorf("coordinate with the primary: %s%s", res.Status, errorBody(res)))
		}
		return nil, err
	}
	return conn, nil
}

// errorBody is ": " and the message of the primary's error answer, or "".
func errorBody(res *http.Response) string {
	if res.Body == nil {
		return ""
	}
	var e tether.ErrorResponse
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Message == "" {
		return ""
	}
	return ": " + e.Message
}

// Handler serves the proxy.
func (p *Proxy) Handler() http.Handler { return http.HandlerFunc(p.serveHTTP) }

func (p *Proxy) routes() {
	m := http.NewServeMux()
	if p.opts.DERP != nil {
		m.Handle("/derp", p.opts.DERP)
		m.Handle("/derp/", p.opts.DERP)
	}
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, "OK\n")
	})
	m.HandleFunc("GET "+tether.LatencyPath, serveLatency)
	m.Handle("GET /api/v2/buildinfo", p.web.public(func(w http.ResponseWriter, r *http.Request) error {
		writeJSON(w, http.StatusOK, tether.BuildInfo{Version: p.opts.Version, AccessURL: p.opts.AccessURL.String(),
			WildcardAccessURL: p.wildcard.String(), PrimaryURL: p.opts.PrimaryURL.String()})
		return nil
	}))
	m.Handle("GET "+ProxyAuthPath, p.web.public(p.finishHandoff))
	m.Handle("GET /api/v2/workspaces/{owner}/{name}/pty", p.web.public(p.servePTY))
	m.Handle("/api/", p.web.public(func(w http.ResponseWriter, r *http.Request) error {
		return tether.Errorf(tether.ENOTFOUND, "a workspace proxy serves no API: use the primary at %s", p.opts.PrimaryURL)
	}))
	if p.opts.Site != nil {
		m.Handle("GET /assets/", p.opts.Site)
		m.Handle("GET /favicon.svg", p.opts.Site)
	}
	m.Handle("/", p.web.public(p.serveRoot))
	p.mux = m
}

// serveHTTP sends subdomain app hosts to their apps, and the rest to the
// proxy's routes once they prove where they come from.
func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if app, ws, owner, ok := p.wildcard.appHost(r.Host); ok {
		p.web.public(func(w http.ResponseWriter, r *http.Request) error {
			return p.serveSubdomainApp(w, r, app, ws, owner)
		})(w, r)
		return
	}
	if changesState(r) && !strings.HasPrefix(r.URL.Path, "/derp") {
		if err := checkOrigin(r, p.opts.AccessURL, hasGrantCookie(r), "the proxy's own pages at "+origin(p.opts.AccessURL)); err != nil {
			p.web.writeError(w, r, err)
			return
		}
	}
	p.mux.ServeHTTP(w, r)
}

// serveRoot serves the terminal's page and path-based apps.
func (p *Proxy) serveRoot(w http.ResponseWriter, r *http.Request) error {
	if owner, ws, ok := ParseTerminalPath(r.URL.Path); ok && r.Method == http.MethodGet {
		if _, _, ok := p.grants.lookup(r, terminalScope(owner, ws), ""); !ok {
			return p.toPrimary(w, r)
		}
		if p.opts.Site == nil {
			return tether.Errorf(tether.ENOTFOUND, "no page at %s", r.URL.Path)
		}
		p.opts.Site.ServeHTTP(w, r)
		return nil
	}
	owner, wsName, appName, rest, ok := parseAppPath(r.URL.Path)
	if !ok {
		return tether.Errorf(tether.ENOTFOUND, "no page at %s: a workspace proxy serves terminals and apps; the dashboard is at %s", r.URL.Path, p.opts.PrimaryURL)
	}
	prefix := fmt.Sprintf("/@%s/%s/apps/%s", owner, wsName, appName)
	if r.URL.Path == prefix {
		http.Redirect(w, r, prefix+"/"+queryString(r.URL), http.StatusPermanentRedirect)
		return nil
	}
	_, c, ok := p.grants.lookup(r, appScope(owner, wsName, appName), "")
	if !ok {
		if r.Method != http.MethodGet {
			return errSignInForApp(appName)
		}
		return p.toPrimary(w, r)
	}
	if c.App.Subdomain && p.wildcard != nil {
		u := p.appOrigin(c)
		http.Redirect(w, r, u.String()+rest[1:]+queryString(r.URL), http.StatusTemporaryRedirect)
		return nil
	}
	return p.web.proxyApp(w, r, appTarget{ws: claimsWorkspace(c), app: *c.App, prefix: prefix, rest: rest})
}

func (p *Proxy) appOrigin(c handoff.Claims) *url.URL {
	return &url.URL{Scheme: p.wildcard.scheme, Host: p.wildcard.hostPort(p.wildcard.appHostname(c.App.Name, c.WorkspaceName, c.Owner)), Path: "/"}
}

// serveSubdomainApp serves an app host under the proxy's wildcard.
func (p *Proxy) serveSubdomainApp(w http.ResponseWriter, r *http.Request, appName, wsName, owner string) error {
	if isReservedAppPath(r.URL.Path) {
		if r.URL.Path == ProxyAuthPath {
			return p.finishHandoff(w, r)
		}
		return tether.Errorf(tether.ENOTFOUND, "no page at %s", r.URL.Path)
	}
	host := p.wildcard.appHostname(appName, wsName, owner)
	_, c, ok := p.grants.lookup(r, appScope(owner, wsName, appName), host)
	if !ok {
		if r.Method != http.MethodGet {
			return errSignInForApp(appName)
		}
		return p.toPrimary(w, r)
	}
	if c.App.Share != tether.SharePublic && changesState(r) {
		appOrigin := p.wildcard.origin(host)
		if err := checkOrigin(r, appOrigin, false, "the app's own pages at "+origin(appOrigin)); err != nil {
			return err
		}
	}
	return p.web.proxyApp(w, r, appTarget{ws: claimsWorkspace(c), app: *c.App, rest: r.URL.Path})
}

// origin is the URL of an app host of the wildcard.
func (w *wildcard) origin(host string) *url.URL {
	return &url.URL{Scheme: w.scheme, Host: w.hostPort(host), Path: "/"}
}

// claimsWorkspace is the workspace a token names, as much as the proxy's
// serving needs of it.
func claimsWorkspace(c handoff.Claims) store.Workspace {
	return store.Workspace{ID: c.Workspace, Name: c.WorkspaceName, OwnerID: c.OwnerID, Owner: c.Owner}
}

// toPrimary sends the browser to the primary for a hand-off token for this
// page.
func (p *Proxy) toPrimary(w http.ResponseWriter, r *http.Request) error {
	self := &url.URL{Scheme: p.opts.AccessURL.Scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: stripTetherQuery(r.URL.RawQuery)}
	dst := *p.opts.PrimaryURL
	dst.Path = "/api/v2/workspaceproxies/auth-redirect"
	dst.RawQuery = url.Values{"redirect_uri": {self.String()}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, dst.String(), http.StatusSeeOther)
	return nil
}

// finishHandoff redeems a hand-off token: once, at the proxy it names, on
// the host it names; then sets the grant's cookie and goes on to the page
// first asked for, on this host whatever the path says.
func (p *Proxy) finishHandoff(w http.ResponseWriter, r *http.Request) error {
	bad := tether.Errorf(tether.EUNAUTHORIZED, "the sign-in link from the primary is invalid, expired or used already: open the terminal or app again from the dashboard")
	now := p.opts.Now()
	c, err := handoff.Verify(p.key, r.URL.Query().Get(HandoffParam), p.id, now)
	if err != nil {
		p.logger.Info("refused a hand-off token", slog.Any("err", err))
		return bad
	}
	reqHost := strings.ToLower(hostOnly(r.Host))
	if c.Host != "" {
		if reqHost != c.Host || c.Scope != handoff.ScopeApp {
			return bad
		}
	} else if !strings.EqualFold(r.Host, p.opts.AccessURL.Host) {
		return bad
	}
	if !p.redeemed.Once(c, now) {
		return bad
	}
	secure := p.opts.AccessURL.Scheme == "https"
	token, expires := p.grants.add(r, c, r.URL.Query().Get(HandoffParam))
	http.SetCookie(w, &http.Cookie{
		Name: grantCookieName(secure), Value: token, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode, Expires: expires,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	base := &url.URL{Scheme: p.opts.AccessURL.Scheme, Host: r.Host}
	http.Redirect(w, r, sameOriginURL(base, r.URL.Query().Get("path")), http.StatusSeeOther)
	return nil
}

// servePTY is the terminal's WebSocket, for a user with a grant for it.
func (p *Proxy) servePTY(w http.ResponseWriter, r *http.Request) error {
	owner, wsName := r.PathValue("owner"), r.PathValue("name")
	g, c, ok := p.grants.lookup(r, terminalScope(owner, wsName), "")
	if !ok {
		return tether.Errorf(tether.EUNAUTHORIZED, "open the terminal from the dashboard: this proxy holds no sign-in of yours for %s/%s", owner, wsName)
	}
	if !isWebSocketUpgrade(r) {
		return errNotWebSocket
	}
	if o := r.Header.Values("Origin"); len(o) > 0 && (len(o) > 1 || !sameOrigin(o[0], p.opts.AccessURL)) {
		return crossSite("a WebSocket from "+o[0], "the proxy's own pages at "+origin(p.opts.AccessURL))
	}
	session, height, width, err := terminalParams(r)
	if err != nil {
		return err
	}
	return p.web.bridgeTerminal(w, r, claimsWorkspace(c), c.User.String()+"/"+session, height, width, func(end func(string)) func() {
		return p.grants.track(g, end)
	})
}
