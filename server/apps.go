package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// Web apps are HTTP services inside workspaces, listed by the workspace's
// template, that the server proxies for browsers over its own tunnel:
//
//   - path-based at /@USER/WS/apps/APP/ on the access URL, and
//   - subdomain-based at APP--WS--USER.<wildcard domain> when the server
//     has --wildcard-access-url.
//
// The server enforces each app's sharing level (owner, authenticated,
// public). No credential of Tether's reaches an app: the server strips every
// form of them from proxied requests (stripCredentials), keeps apps from
// setting Tether's cookies or cookies for other hosts (filterAppCookies),
// scopes cookies that path-based apps set to the app's path, and subdomain
// apps get a token of their own (apptokens.go), valid only for their host.

// appTarget is one app of one workspace, resolved from a request.
type appTarget struct {
	ws     store.Workspace
	app    tether.App
	prefix string // the path prefix the browser sees ("" for subdomain apps)
	rest   string // the path after the prefix, starting with "/"
}

// parseAppPath splits "/@USER/WS/apps/APP/REST" into its parts.
func parseAppPath(p string) (user, ws, app, rest string, ok bool) {
	if !strings.HasPrefix(p, "/@") {
		return "", "", "", "", false
	}
	parts := strings.SplitN(p[2:], "/", 5)
	if len(parts) < 4 || parts[2] != "apps" || parts[0] == "" || parts[1] == "" || parts[3] == "" {
		return "", "", "", "", false
	}
	rest = "/"
	if len(parts) == 5 {
		rest += parts[4]
	}
	return parts[0], parts[1], parts[3], rest, true
}

// resolveApp finds the workspace and app, as anyone may name them. Whether
// the caller may open it is decided by authorizeApp.
func (s *Server) resolveApp(ctx context.Context, owner, wsName, appName string) (store.Workspace, tether.App, error) {
	notFound := errAppNotFound(owner, wsName, appName)
	u, err := s.store.UserByLogin(ctx, owner)
	if errors.Is(err, store.ErrNotFound) {
		return store.Workspace{}, tether.App{}, notFound
	} else if err != nil {
		return store.Workspace{}, tether.App{}, err
	}
	ws, err := s.store.WorkspaceByOwnerAndName(ctx, u.ID, wsName)
	if errors.Is(err, store.ErrNotFound) {
		return ws, tether.App{}, notFound
	} else if err != nil {
		return ws, tether.App{}, err
	}
	app, err := s.workspaceApp(ctx, ws, appName)
	return ws, app, err
}

// workspaceApp finds the app of ws's template named appName.
func (s *Server) workspaceApp(ctx context.Context, ws store.Workspace, appName string) (tether.App, error) {
	notFound := errAppNotFound(ws.Owner, ws.Name, appName)
	if ws.TemplateID == uuid.Nil {
		return tether.App{}, notFound
	}
	t, err := s.store.TemplateByID(ctx, ws.TemplateID)
	if err != nil {
		return tether.App{}, err
	}
	for _, a := range t.Apps {
		if a.Name == appName {
			return a, nil
		}
	}
	return tether.App{}, notFound
}

func errAppNotFound(owner, ws, app string) error {
	return tether.Errorf(tether.ENOTFOUND, "app %s of workspace %s/%s not found", app, owner, ws)
}

// errSignInForApp is the answer to callers who are not signed in, for an
// app they may not open and for one that does not exist alike.
func errSignInForApp(app string) error {
	return tether.Errorf(tether.EUNAUTHORIZED, "sign in to open app %s", app)
}

// authorizeApp applies the app's sharing level to the caller (nil when not
// signed in). Refusals for signed-in users say "not found", so that private
// apps' existence does not leak.
func authorizeApp(u *store.User, t appTarget) error {
	switch t.app.Share {
	case tether.SharePublic:
		return nil
	case tether.ShareAuthenticated:
		if u != nil {
			return nil
		}
	default: // owner
		if u != nil && canAccess(*u, t.ws) {
			return nil
		}
		if u != nil {
			return errAppNotFound(t.ws.Owner, t.ws.Name, t.app.Name)
		}
	}
	return errSignInForApp(t.app.Name)
}

// servePathApp serves /@USER/WS/apps/APP/... on the access URL.
func (s *Server) servePathApp(w http.ResponseWriter, r *http.Request) error {
	owner, wsName, appName, rest, ok := parseAppPath(r.URL.Path)
	if !ok {
		return tether.Errorf(tether.ENOTFOUND, "no page at %s", r.URL.Path)
	}
	prefix := fmt.Sprintf("/@%s/%s/apps/%s", owner, wsName, appName)
	if r.URL.Path == prefix {
		http.Redirect(w, r, prefix+"/"+queryString(r.URL), http.StatusPermanentRedirect)
		return nil
	}
	var caller *store.User
	if u, err := s.authenticateUser(r); err == nil {
		caller = &u
	}
	// Callers who are not signed in get the same answer for an app that
	// does not exist as for one they may not open (public apps aside).
	signIn := func() error {
		if wantsHTML(r) {
			http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return nil
		}
		return errSignInForApp(appName)
	}
	ws, app, err := s.resolveApp(r.Context(), owner, wsName, appName)
	if err != nil {
		if caller == nil && tether.ErrorCode(err) == tether.ENOTFOUND {
			return signIn()
		}
		return err
	}
	t := appTarget{ws: ws, app: app, prefix: prefix, rest: rest}
	if err := authorizeApp(caller, t); err != nil {
		if caller == nil {
			return signIn()
		}
		return err
	}
	if app.Subdomain && s.wildcard != nil {
		// Served on its own origin only: a subdomain app may rely on it.
		http.Redirect(w, r, s.subdomainAppURL(ws, app)+rest[1:]+queryString(r.URL), http.StatusTemporaryRedirect)
		return nil
	}
	if err := s.pathAppOrigin(caller, t); err != nil {
		return err
	}
	return s.proxyApp(w, r, t)
}

// pathAppOrigin refuses a path-based app to anyone but its workspace's
// owner, unless the operator accepted the risk: a path-based app runs on
// the dashboard's origin, so its scripts could call the API with the
// session of whoever opens it (an admin's, say). Subdomain apps have an
// origin of their own and no such limit.
func (s *Server) pathAppOrigin(caller *store.User, t appTarget) error {
	if s.allowPathAppSharing || caller != nil && caller.ID == t.ws.OwnerID {
		return nil
	}
	return tether.Errorf(tether.EFORBIDDEN,
		"app %s is path-based, and path-based apps open only for their workspace's owner: they share the dashboard's origin, so the app could act as you. "+
			"Ask for it as a subdomain app (subdomain: true in the template, with the server's --wildcard-access-url), "+
			"or an admin may accept the risk with --dangerous-allow-path-app-sharing", t.app.Name)
}

func queryString(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}

func wantsHTML(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html")
}

// appDialTimeout bounds reaching an app's port through the tunnel.
const appDialTimeout = 30 * time.Second

// proxyApp forwards the request to the app inside the workspace.
func (s *Server) proxyApp(w http.ResponseWriter, r *http.Request, t appTarget) error {
	target, err := url.Parse(t.app.URL)
	if err != nil {
		return tether.Errorf(tether.EINVALID, "app %s has a bad URL %q", t.app.Name, t.app.URL)
	}
	port, err := urlPort(target)
	if err != nil {
		return err
	}
	if s.coord != nil && !s.coord.AgentConnected(t.ws.ID) {
		return errAgentOffline(t.ws)
	}
	s.appRequests.Add(1)
	s.appRequestsTotal.Add(1)
	defer s.appRequests.Add(-1)
	wsID := t.ws.ID
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, appDialTimeout)
			defer cancel()
			return s.agentNet.Dial(ctx, wsID, port)
		},
		// The app runs on the workspace's loopback under a name only it
		// knows; the tunnel has authenticated the workspace already.
		TLSClientConfig:       &tls.Config{InsecureSkipVerify: true},
		ResponseHeaderTimeout: 5 * time.Minute,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       time.Minute,
	}
	defer transport.CloseIdleConnections()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			pr.Out.URL.Path = strings.TrimSuffix(target.Path, "/") + t.rest
			pr.Out.URL.RawPath = ""
			pr.Out.URL.RawQuery = stripTetherQuery(pr.In.URL.RawQuery)
			pr.Out.Host = target.Host
			s.stripCredentials(pr.Out)
		},
		Transport: transport,
		ModifyResponse: func(resp *http.Response) error {
			filterAppCookies(resp, t.prefix)
			if t.prefix != "" {
				rewriteLocation(resp, target, t.prefix)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.logger.Debug("app proxy", slog.String("app", t.app.Name), slog.Any("err", err))
			s.writeError(w, r, tether.Errorf(tether.EUNAVAILABLE,
				"app %s did not answer at %s inside workspace %s/%s: is it running?", t.app.Name, t.app.URL, t.ws.Owner, t.ws.Name))
		},
	}
	proxy.ServeHTTP(w, r)
	return nil
}

func urlPort(u *url.URL) (uint16, error) {
	p := u.Port()
	if p == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, tether.Errorf(tether.EINVALID, "app URL %s has a bad port", u)
	}
	return uint16(n), nil
}

// stripCredentials removes from a request about to reach an app every
// credential the server accepts, in every form it accepts it: the session
// and agent token headers, "Authorization: Bearer" with a session, API or
// agent token, and Tether's cookies under any of their names. A bearer token the
// server does not know is the app's own business and passes: apps with an
// API of their own (a notebook server's token, say) keep working. If the
// store cannot say, the header is dropped.
func (s *Server) stripCredentials(r *http.Request) {
	r.Header.Del(tether.SessionTokenHeader)
	r.Header.Del(tether.AgentTokenHeader)
	r.Header.Del(tether.ProxyTokenHeader)
	if auths := r.Header.Values("Authorization"); len(auths) > 0 {
		r.Header.Del("Authorization")
		for _, a := range auths {
			if !s.isOurBearer(r.Context(), a) {
				r.Header.Add("Authorization", a)
			}
		}
	}
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if !isTetherCookie(c.Name) {
			r.AddCookie(c)
		}
	}
}

// isOurBearer reports whether an Authorization header value is a bearer
// token of Tether's: a session's or an API token's (current or expired), or
// an agent's.
func (s *Server) isOurBearer(ctx context.Context, auth string) bool {
	if len(auth) <= 7 || !strings.EqualFold(auth[:7], "bearer ") {
		return false
	}
	if s.store == nil {
		// A workspace proxy has no store to ask: it drops every bearer
		// token shaped like Tether's (newToken's).
		return looksLikeOurToken(strings.TrimSpace(auth[7:]))
	}
	hash := store.HashToken(strings.TrimSpace(auth[7:]))
	_, _, err := s.findSession(ctx, hash)
	if !errors.Is(err, store.ErrNotFound) {
		return true // ours, or the store cannot say
	}
	_, err = s.store.WorkspaceByAgentTokenHash(ctx, hash)
	return !errors.Is(err, store.ErrNotFound)
}

// stripTetherQuery removes query parameters named tether_… (the app sign-in
// code among them) and keeps the rest as the browser sent them.
func stripTetherQuery(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	keep := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if !strings.HasPrefix(strings.ToLower(k), "tether_") {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "&")
}

// filterAppCookies keeps apps' cookies to the app: it drops any that
// names one of Tether's cookies, and drops the Domain attribute of the
// rest, so that each is host-only: an app sets cookies for its own host,
// never for the dashboard's or for other apps'. A path-based app's cookies
// are also confined to the app's path (prefix), so that apps on the
// dashboard's origin do not see each other's cookies.
func filterAppCookies(resp *http.Response, prefix string) {
	lines := resp.Header.Values("Set-Cookie")
	if len(lines) == 0 {
		return
	}
	resp.Header.Del("Set-Cookie")
	for _, line := range lines {
		c, err := http.ParseSetCookie(line)
		if err != nil || isTetherCookie(c.Name) {
			continue
		}
		c.Domain = ""
		if prefix != "" {
			c.Path = prefix + "/" + strings.TrimPrefix(c.Path, "/")
		}
		if v := c.String(); v != "" {
			resp.Header.Add("Set-Cookie", v)
		}
	}
}

// rewriteLocation keeps an app's redirects to its own absolute paths
// inside the app's prefix.
func rewriteLocation(resp *http.Response, target *url.URL, prefix string) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return
	}
	u, err := url.Parse(loc)
	if err != nil {
		return
	}
	if u.Host != "" && u.Host != target.Host {
		return // elsewhere: leave it
	}
	if strings.HasPrefix(u.Path, "/") {
		u.Scheme, u.Host = "", ""
		u.Path = prefix + strings.TrimPrefix(u.Path, strings.TrimSuffix(target.Path, "/"))
		resp.Header.Set("Location", u.String())
	}
}

// looksLikeOurToken reports whether a token has the shape of Tether's
// (newToken): 43 characters of unpadded base64url.
func looksLikeOurToken(t string) bool {
	if len(t) != 43 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
