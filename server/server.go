// Package server is Tether's control plane: the REST API under /api/v2, the
// agents' and clients' coordination WebSockets, and (in later files) the
// built-in DERP relay, the dashboard and the web proxies. It keeps its state
// in a store.Store and never holds a tunnel private key of any peer.
package server

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/server/agentnet"
	"github.com/tetherdev/tether/server/healthcheck"
	"github.com/tetherdev/tether/store"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Options configure a Server. Zero values mean what their comments say.
type Options struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Store holds users, sessions, templates and workspaces. Required.
	Store store.Store
	// AccessURL is where users and agents reach this server. Required.
	AccessURL *url.URL
	// Version is reported by /api/v2/buildinfo.
	Version string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Coordinator introduces the peers whose coordination streams the
	// server accepts (agents, CLIs, its own tunnels to agents). Required.
	// It is the caller's: with several replicas the caller wires it to
	// them, and the relay asks it which keys to admit. The server only
	// serves streams on it; close it after Close, when no stream is left.
	Coordinator *coordinator.Coordinator

	// DERP serves the built-in relay at /derp; nil when the server runs
	// none (--derp-server-enable=false).
	DERP http.Handler
	// DERPRegionID and DERPMeshKey are the built-in relay's region and the
	// key it trusts any client with, for the health report's relay checks
	// (the relay admits no other stranger).
	DERPRegionID int
	DERPMeshKey  key.DERPMesh
	// UDPRelayCheck probes the built-in UDP relay at each of its
	// addresses for the health report (healthcheck.Options.UDPRelay); nil
	// when the server runs none.
	UDPRelayCheck func(ctx context.Context) map[netip.AddrPort]error
	// DERPMap is the relay map handed to every peer. Required.
	DERPMap *tailcfg.DERPMap
	// BlockDirect tells peers to publish no endpoints, so that all traffic
	// is relayed (--block-direct-connections).
	BlockDirect bool
	// DERPForceWebSockets tells peers to reach relays over WebSocket only.
	DERPForceWebSockets bool
	// BrowserOnly refuses CLI tunnels (--browser-only). It also keeps web
	// terminals on the server's relay.
	BrowserOnly bool
	// BrowserDirect lets web terminals go direct, browser to agent over
	// WebRTC (--browser-direct), unless BrowserOnly or BlockDirect.
	BrowserDirect bool
	// WildcardAccessURL, such as "*.apps.example.com", turns on subdomain
	// apps at APP--WS--USER.apps.example.com.
	WildcardAccessURL string
	// Site serves the dashboard; nil serves none.
	Site http.Handler
	// SitePage reports whether a path (as sent, percent-encoded) is one of
	// the dashboard's pages (site.IsPage); Site serves those and its
	// assets, and other paths are 404. Nil sends every path to Site.
	SitePage func(escapedPath string) bool
	// AllowPathAppSharing lets path-based apps open for users other than
	// their workspace's owner (--dangerous-allow-path-app-sharing).
	AllowPathAppSharing bool
	// TrustedProxies are the addresses of reverse proxies whose
	// X-Forwarded-For names the client, for sign-in throttling and logs.
	// Empty means the connection's peer is the client.
	TrustedProxies []netip.Prefix
	// MaxWorkspacesPerUser is how many workspaces each user may own
	// (--max-workspaces-per-user); 0 means no limit.
	MaxWorkspacesPerUser int
	// MaxTokenLifetime is the longest lifetime an API token may be given
	// (--max-token-lifetime); 0 means DefaultMaxTokenLifetime.
	MaxTokenLifetime time.Duration

	// AgentBinary is the server's own binary (os.Executable), served as
	// the agent binary for the server's OS and architecture; empty serves
	// none. AgentBinariesDir holds those of other platforms
	// (--agent-binaries-dir); empty for none. See binaries.go.
	AgentBinary      string
	AgentBinariesDir string

	// Replicas lists the other replicas and SelfRelayURL is where they
	// reach this one's relay, for the health report's relay mesh check.
	Replicas     func() []healthcheck.Replica
	SelfRelayURL string

	// OnProxyRelays is told the relays of the healthy workspace proxies
	// whenever they change, for the built-in relay's mesh; nil ignores
	// them.
	OnProxyRelays func([]tether.RelayPeer)
	// Metrics, when set, receives the server's metrics (metrics.go): its
	// requests by route, agents connected, sessions. Nil measures nothing.
	Metrics prometheus.Registerer
}

// Server serves the API. Create it with New, serve Handler, and Close it.
type Server struct {
	logger              *slog.Logger
	store               store.Store
	accessURL           *url.URL
	version             string
	now                 func() time.Time
	mux                 *http.ServeMux
	routeList           []route // what mux serves, as data (routes.go)
	coord               *coordinator.Coordinator
	connInfo            tether.ConnectionInfo
	agentNet            *agentnet.Net
	wildcard            *wildcard // nil without subdomain apps
	allowPathAppSharing bool
	appTokens           appTokens
	logins              *loginThrottle
	trustedProxies      []netip.Prefix
	maxWorkspaces       int
	maxTokenLifetime    time.Duration
	live                liveConns
	appHealth           appHealth
	connections         connections
	health              healthCache
	replicas            func() []healthcheck.Replica
	selfRelayURL        string
	derpRegionID        int
	derpMeshKey         key.DERPMesh
	binaries            *agentBinaries
	udpRelayCheck       func(ctx context.Context) map[netip.AddrPort]error
	hasRelay            bool
	proxies             proxyRegions
	onProxyRelays       func([]tether.RelayPeer)
	handoffOnce         sync.Mutex         // guards handoffPriv's loading
	handoffPriv         ed25519.PrivateKey // loaded by handoffKey
	handler             http.Handler       // serveHTTP, measured

	// Requests being proxied to apps, and all so far, for metrics.go.
	appRequests      atomic.Int64
	appRequestsTotal atomic.Uint64

	// browserDirect returns the ICE servers of web terminals' direct
	// paths; nil when they are off (terminal_direct.go).
	browserDirect func() []string
	// Web terminals by path, and the terminal bytes the server relayed
	// (to the browser, to the agent), for the dashboard and metrics.go.
	terminalPaths    terminalPaths
	terminalBytesOut atomic.Uint64
	terminalBytesIn  atomic.Uint64

	ctx    context.Context // canceled by Close; parent of long-lived work
	cancel context.CancelFunc
	wg     sync.WaitGroup // long-lived goroutines and WebSocket handlers

	mu     sync.Mutex
	agents map[uuid.UUID]*agentConn // connected agents by workspace ID
}

// New returns a Server for opts.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("server: Store is required")
	}
	if opts.AccessURL == nil {
		return nil, errors.New("server: AccessURL is required")
	}
	if opts.DERPMap == nil {
		return nil, errors.New("server: DERPMap is required")
	}
	if opts.Coordinator == nil {
		return nil, errors.New("server: Coordinator is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	wc, err := parseWildcard(opts.WildcardAccessURL, opts.AccessURL)
	if err != nil {
		return nil, err
	}
	binaries, err := newAgentBinaries(logger.With(slog.String("component", "binaries")), opts.AgentBinary, opts.AgentBinariesDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		binaries:            binaries,
		wildcard:            wc,
		allowPathAppSharing: opts.AllowPathAppSharing,
		logins:              newLoginThrottle(),
		trustedProxies:      opts.TrustedProxies,
		maxWorkspaces:       opts.MaxWorkspacesPerUser,
		maxTokenLifetime:    cmp.Or(opts.MaxTokenLifetime, DefaultMaxTokenLifetime),
		logger:              logger,
		store:               opts.Store,
		accessURL:           opts.AccessURL,
		version:             opts.Version,
		now:                 func() time.Time { return now().UTC() },
		ctx:                 ctx,
		cancel:              cancel,
		agents:              map[uuid.UUID]*agentConn{},
		replicas:            opts.Replicas,
		selfRelayURL:        opts.SelfRelayURL,
		derpRegionID:        opts.DERPRegionID,
		derpMeshKey:         opts.DERPMeshKey,
		udpRelayCheck:       opts.UDPRelayCheck,
		coord:               opts.Coordinator,
		hasRelay:            opts.DERP != nil,
		onProxyRelays:       opts.OnProxyRelays,
		proxies: proxyRegions{
			kick: make(chan struct{}, 1), base: opts.DERPMap, current: opts.DERPMap,
			healthy: map[uuid.UUID]bool{}, streams: map[uuid.UUID][]*proxyWS{},
		},
		connInfo: tether.ConnectionInfo{
			DERPMap:             opts.DERPMap,
			DisableDirect:       opts.BlockDirect,
			DERPForceWebSockets: opts.DERPForceWebSockets,
			BrowserOnly:         opts.BrowserOnly,
		},
	}
	s.agentNet, err = agentnet.New(agentnet.Options{
		Logger:              logger.With(slog.String("component", "agentnet")),
		Coordinator:         s.coord,
		DERPMap:             opts.DERPMap,
		BlockEndpoints:      opts.BlockDirect,
		DERPPlainHTTP:       opts.AccessURL.Scheme == "http",
		DERPForceWebSockets: opts.DERPForceWebSockets,
	})
	if err != nil {
		cancel()
		binaries.Close()
		return nil, err
	}
	if opts.BrowserDirect && !opts.BrowserOnly && !opts.BlockDirect {
		s.browserDirect = func() []string { return iceServers(s.derpMap()) }
	}
	s.routes(opts.DERP, opts.Site, opts.SitePage)
	s.handler = s.instrument(opts.Metrics, http.HandlerFunc(s.serveHTTP))
	s.wg.Add(3)
	go s.expireSessions()
	go s.sweepLive()
	go s.watchProxies()
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// serveHTTP sends requests for subdomain app hosts to their apps, and the
// rest, once they prove where they come from (csrf.go), to the API, the
// relay and the dashboard.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if app, ws, owner, ok := s.wildcard.appHost(r.Host); ok {
		s.public(func(w http.ResponseWriter, r *http.Request) error {
			return s.serveSubdomainApp(w, r, app, ws, owner)
		})(w, r)
		return
	}
	if err := s.checkProvenance(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close ends every WebSocket, tunnel and background task and waits for
// them. It closes neither the store nor the coordinator.
func (s *Server) Close() error {
	s.cancel()
	s.agentNet.Close()
	s.wg.Wait()
	s.binaries.Close()
	return nil
}

func (s *Server) routes(derp, site http.Handler, sitePage func(string) bool) {
	s.routeList = s.routeTable(derp, site, sitePage)
	s.mux = http.NewServeMux()
	for _, rt := range s.routeList {
		s.mux.Handle(rt.pattern, rt.handler)
	}
}

// public, user and agent adapt handlers that return errors, authenticating
// the caller first where needed and passing who it is explicitly.
func (s *Server) public(h publicHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverPanic(w, r)
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) user(h userHandler) http.HandlerFunc {
	return s.public(func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.authenticateUser(r)
		if err != nil {
			return err
		}
		return h(w, r, u)
	})
}

func (s *Server) agent(h agentHandler) http.HandlerFunc {
	return s.public(func(w http.ResponseWriter, r *http.Request) error {
		ws, err := s.authenticateAgent(r)
		if err != nil {
			return err
		}
		return h(w, r, ws)
	})
}

// recoverPanic turns a handler's panic into a logged 500 so that no input
// can take the server down or show a stack trace to a user.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	if v := recover(); v != nil {
		if v == http.ErrAbortHandler {
			panic(v)
		}
		s.logger.Error("handler panicked", slog.String("path", r.URL.Path), slog.Any("panic", v))
		s.writeError(w, r, errors.New("panic"))
	}
}

func (s *Server) getBuildInfo(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, tether.BuildInfo{Version: s.version, AccessURL: s.accessURL.String(), WildcardAccessURL: s.wildcard.String()})
	return nil
}

// expireSessions deletes expired sessions now and then.
func (s *Server) expireSessions() {
	defer s.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := s.store.DeleteExpiredSessions(s.ctx, s.now()); err != nil && s.ctx.Err() == nil {
			s.logger.Warn("delete expired sessions", slog.Any("err", err))
		}
		s.appTokens.expire(s.now())
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}
