package server

import (
	"net/http"
	"strings"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/server/healthcheck"
	"github.com/tetherdev/tether/store"
)

// The routing table is data: the mux is built from it, and the access test
// (access_test.go) walks the same list, so that a route added here without
// a row in that test's table fails the test. Each entry says how its
// caller authenticates; the constructors below wrap the handler to match,
// so that the two cannot disagree.

// authKind is how a route's caller authenticates.
type authKind string

const (
	// authNone routes take no Tether credential; the handler decides what
	// it needs (the relay, the WebSocket echo).
	authNone authKind = "none"
	// authPublic routes serve anyone; the handler may look for a signed-in
	// user itself (sign-in, apps, the dashboard).
	authPublic authKind = "public"
	// authUser routes need a signed-in user: a session token header, a
	// bearer Authorization, or the dashboard's cookie.
	authUser authKind = "user"
	// authAgent routes need a workspace agent's token.
	authAgent authKind = "agent"
	// authProxy routes need a workspace proxy's token.
	authProxy authKind = "proxy"
)

// route is one entry of the routing table.
type route struct {
	// pattern is the http.ServeMux pattern, with its method unless the
	// route takes any.
	pattern   string
	auth      authKind
	websocket bool // the route becomes a WebSocket
	handler   http.Handler
}

type (
	publicHandler func(http.ResponseWriter, *http.Request) error
	userHandler   func(http.ResponseWriter, *http.Request, store.User) error
	agentHandler  func(http.ResponseWriter, *http.Request, store.Workspace) error
)

func rawRoute(pattern string, h http.Handler) route {
	return route{pattern: pattern, auth: authNone, handler: h}
}

func (s *Server) publicRoute(pattern string, h publicHandler) route {
	return route{pattern: pattern, auth: authPublic, handler: s.public(h)}
}

func (s *Server) userRoute(pattern string, h userHandler) route {
	return route{pattern: pattern, auth: authUser, handler: s.user(h)}
}

func (s *Server) agentRoute(pattern string, h agentHandler) route {
	return route{pattern: pattern, auth: authAgent, handler: s.agent(h)}
}

// userWebSocket is a user route that only opens a WebSocket. Once its
// caller is known, and before the handler starts anything (a terminal
// session, say), it refuses a plain request, and a handshake from a page of
// another origin whatever its credential: coder/websocket's Accept would
// refuse the latter too, but only once the handler has done its work.
func (s *Server) userWebSocket(pattern string, h userHandler) route {
	rt := s.userRoute(pattern, func(w http.ResponseWriter, r *http.Request, u store.User) error {
		if err := s.checkWebSocket(r); err != nil {
			return err
		}
		return h(w, r, u)
	})
	rt.websocket = true
	return rt
}

func (s *Server) agentWebSocket(pattern string, h agentHandler) route {
	rt := s.agentRoute(pattern, func(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
		if err := s.checkWebSocket(r); err != nil {
			return err
		}
		return h(w, r, ws)
	})
	rt.websocket = true
	return rt
}

func (s *Server) proxyWebSocket(pattern string, h proxyHandler) route {
	rt := s.proxyRoute(pattern, h)
	rt.websocket = true
	return rt
}

func (s *Server) checkWebSocket(r *http.Request) error {
	if !isWebSocketUpgrade(r) {
		return errNotWebSocket
	}
	if o := r.Header.Values("Origin"); len(o) > 0 && (len(o) > 1 || !sameOrigin(o[0], s.accessURL)) {
		return crossSite("a WebSocket from "+o[0], "the dashboard at "+origin(s.accessURL))
	}
	return nil
}

var errNotWebSocket = tether.Errorf(tether.EINVALID, "this endpoint speaks WebSocket only")

// routeTable lists every route the server serves on its access URL.
// Subdomain app hosts are served before the table (serveHTTP).
func (s *Server) routeTable(derp, site http.Handler, sitePage func(string) bool) []route {
	var rs []route
	if derp != nil {
		rs = append(rs, rawRoute("/derp", derp), rawRoute("/derp/", derp))
	}
	echo := rawRoute("GET "+healthcheck.WebSocketEchoPath, http.HandlerFunc(healthcheck.Echo))
	echo.websocket = true
	return append(rs,
		s.publicRoute("/", s.serveRoot(site, sitePage)),
		s.publicRoute("/api/", func(w http.ResponseWriter, r *http.Request) error {
			return tether.Errorf(tether.ENOTFOUND, "no API endpoint %s %s", r.Method, r.URL.Path)
		}),
		echo,
		s.publicRoute("GET /healthz", getHealthz),
		rawRoute("GET /bin/{file}", http.HandlerFunc(s.serveBinary)),
		s.publicRoute("GET /install.sh", s.getInstallScript),

		s.publicRoute("GET /api/v2/buildinfo", s.getBuildInfo),
		s.publicRoute("GET /api/v2/connection-info", s.getConnectionInfo),
		s.userRoute("GET /api/v2/debug/health", s.getHealth),

		s.publicRoute("GET /api/v2/users/first", s.getFirstUser),
		s.publicRoute("POST /api/v2/users/first", s.postFirstUser),
		s.publicRoute("POST /api/v2/users/login", s.postLogin),
		s.userRoute("POST /api/v2/users/logout", s.postLogout),
		s.userRoute("GET /api/v2/users/me", s.getMe),
		s.userRoute("GET /api/v2/users", s.getUsers),
		s.userRoute("POST /api/v2/users", s.postUser),
		s.userRoute("GET /api/v2/users/{user}", s.getUser),
		s.userRoute("DELETE /api/v2/users/{user}", s.deleteUser),
		s.userRoute("PUT /api/v2/users/{user}/status", s.putUserStatus),
		s.userRoute("PUT /api/v2/users/{user}/role", s.putUserRole),
		s.userRoute("PUT /api/v2/users/{user}/password", s.putUserPassword),
		s.userRoute("DELETE /api/v2/users/{user}/sessions", s.deleteUserSessions),
		s.userRoute("GET /api/v2/users/{user}/tokens", s.getAPITokens),
		s.userRoute("POST /api/v2/users/{user}/tokens", s.postAPIToken),
		s.userRoute("DELETE /api/v2/users/{user}/tokens/{token}", s.deleteAPIToken),

		s.userRoute("GET /api/v2/templates", s.getTemplates),
		s.userRoute("POST /api/v2/templates", s.postTemplate),
		s.userRoute("GET /api/v2/templates/{name}", s.getTemplate),

		s.userRoute("GET /api/v2/workspaces", s.getWorkspaces),
		s.userRoute("POST /api/v2/workspaces", s.postWorkspace),
		s.userRoute("GET /api/v2/workspaces/{owner}/{name}", s.getWorkspace),
		s.userRoute("DELETE /api/v2/workspaces/{owner}/{name}", s.deleteWorkspace),
		s.userRoute("GET /api/v2/workspaces/{owner}/{name}/startup-script", s.getStartupScript),
		s.userWebSocket("GET /api/v2/workspaces/{owner}/{name}/pty", s.workspacePTY),
		s.userWebSocket("GET /api/v2/workspaces/{owner}/{name}/coordinate", s.clientCoordinate),
		s.publicRoute("GET /api/v2/applications/auth-redirect", s.appAuthRedirect),

		s.publicRoute("GET "+tether.LatencyPath, func(w http.ResponseWriter, r *http.Request) error {
			serveLatency(w, r)
			return nil
		}),
		s.userRoute("GET /api/v2/regions", s.getRegions),
		s.userRoute("GET /api/v2/workspaceproxies", s.getWorkspaceProxies),
		s.userRoute("POST /api/v2/workspaceproxies", s.postWorkspaceProxy),
		s.userRoute("DELETE /api/v2/workspaceproxies/{name}", s.deleteWorkspaceProxy),
		s.userRoute("POST /api/v2/workspaceproxies/{name}/token", s.postWorkspaceProxyToken),
		s.publicRoute("GET /api/v2/workspaceproxies/auth-redirect", s.proxyAuthRedirect),
		s.proxyRoute("POST /api/v2/workspaceproxies/me/heartbeat", s.postProxyHeartbeat),
		s.proxyWebSocket("GET /api/v2/workspaceproxies/me/coordinate", s.proxyCoordinate),
		s.proxyRoute("GET /api/v2/workspaceproxies/me/node-keys/{key}", s.getProxyNodeKey),

		s.agentRoute("GET /api/v2/agent/manifest", s.getAgentManifest),
		s.agentWebSocket("GET /api/v2/agent/connect", s.agentConnect),
		s.agentRoute("POST /api/v2/agent/app-health", s.postAppHealth),
		s.agentRoute("POST /api/v2/agent/connections", s.postConnections),
		s.agentRoute("POST /api/v2/agent/startup-script", s.postStartupScript),
	)
}

// serveRoot serves what no other route does: path-based apps, and the
// dashboard's pages and assets. Anything else is 404 (a readable page for
// browsers), not the dashboard: a monitoring probe of /metrics or a
// mistyped link must not get 200.
func (s *Server) serveRoot(site http.Handler, sitePage func(string) bool) publicHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, _, _, _, ok := parseAppPath(r.URL.Path); ok {
			return s.servePathApp(w, r)
		}
		p := r.URL.EscapedPath()
		isAsset := p == "/assets" || strings.HasPrefix(p, "/assets/")
		if site == nil || (sitePage != nil && !isAsset && !sitePage(p)) {
			return tether.Errorf(tether.ENOTFOUND, "no page at %s", r.URL.Path)
		}
		site.ServeHTTP(w, r)
		return nil
	}
}
