package server

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// Subdomain apps live at APP--WS--USER.<wildcard domain>, an origin of their
// own. Browsers carry no dashboard cookie there (it is host-only), so the
// server hands each app host a token of its own (apptokens.go):
//
//  1. A request without a valid token for a non-public app is redirected to
//     /api/v2/applications/auth-redirect on the access URL.
//  2. There the user is signed in (or sent to sign in); the server checks
//     that they may open the app and redirects back to the app host's
//     /__tether/app-auth with a one-time code.
//  3. The app host redeems the code for a token, sets it as a host-only
//     cookie and redirects to the page first asked for.
//
// Paths under /__tether/ on app hosts are the server's, never the app's.

const (
	appAuthPath      = "/__tether/app-auth"
	reservedAppPath  = "/__tether/"
	appAuthCodeParam = "tether_auth_code"
)

// wildcard is a --wildcard-access-url: "*.apps.example.com", optionally
// with a port.
type wildcard struct {
	suffix string // ".apps.example.com"
	port   string // "" for the scheme's default
	scheme string
}

// parseWildcard checks a --wildcard-access-url. The port and scheme default
// to the access URL's.
func parseWildcard(raw string, accessURL *url.URL) (*wildcard, error) {
	if raw == "" {
		return nil, nil
	}
	raw = strings.TrimPrefix(strings.TrimPrefix(raw, "https://"), "http://")
	if !strings.HasPrefix(raw, "*.") {
		return nil, errors.New("--wildcard-access-url must look like *.apps.example.com")
	}
	host, port := raw[1:], accessURL.Port()
	if h, p, err := net.SplitHostPort(raw[1:]); err == nil {
		host, port = h, p
	}
	if strings.Contains(host, "*") || len(host) < 2 {
		return nil, errors.New("--wildcard-access-url must have exactly one leading *: *.apps.example.com")
	}
	return &wildcard{suffix: strings.ToLower(host), port: port, scheme: accessURL.Scheme}, nil
}

// String renders the wildcard for /api/v2/buildinfo.
func (w *wildcard) String() string {
	if w == nil {
		return ""
	}
	return "*" + w.hostPort(w.suffix)
}

func (w *wildcard) hostPort(host string) string {
	if w.port == "" {
		return host
	}
	return net.JoinHostPort(host, w.port)
}

// appHost parses a request's Host as APP--WS--USER.<suffix>.
func (w *wildcard) appHost(hostport string) (app, ws, user string, ok bool) {
	if w == nil {
		return "", "", "", false
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(host)
	label, found := strings.CutSuffix(host, w.suffix)
	if !found || strings.Contains(label, ".") {
		return "", "", "", false
	}
	parts := strings.Split(label, "--")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// isReservedAppPath reports whether a request path on an app host is the
// server's, not the app's: /__tether/ and everything under it, however an
// app would read the path once cleaned ("//__tether/", "/a/../__tether").
func isReservedAppPath(p string) bool {
	c := path.Clean("/" + p)
	return strings.HasPrefix(p, reservedAppPath) || c+"/" == reservedAppPath || strings.HasPrefix(c, reservedAppPath)
}

// subdomainAppURL is the root URL of a subdomain app, with a trailing slash.
func (s *Server) subdomainAppURL(ws store.Workspace, app tether.App) string {
	return s.appOrigin(app.Name, ws.Name, ws.Owner).String()
}

// appHostname is the lowercase host name of an app, without a port: what
// app tokens are bound to.
func (w *wildcard) appHostname(app, ws, owner string) string {
	return strings.ToLower(app + "--" + ws + "--" + owner + w.suffix)
}

// appOrigin is the URL of an app host's root, as browsers reach it.
func (s *Server) appOrigin(app, ws, owner string) *url.URL {
	return &url.URL{Scheme: s.wildcard.scheme, Host: s.wildcard.hostPort(s.wildcard.appHostname(app, ws, owner)), Path: "/"}
}

// serveSubdomainApp serves every request to an app host.
func (s *Server) serveSubdomainApp(w http.ResponseWriter, r *http.Request, appName, wsName, owner string) error {
	if isReservedAppPath(r.URL.Path) {
		if r.URL.Path == appAuthPath {
			return s.finishAppAuth(w, r, appName, wsName, owner)
		}
		return tether.Errorf(tether.ENOTFOUND, "no page at %s", r.URL.Path)
	}
	host := s.wildcard.appHostname(appName, wsName, owner)
	caller, err := s.appCaller(r, host)
	if err != nil {
		return err
	}
	// Callers who are not signed in get the same answer for an app that
	// does not exist as for one they may not open: which apps exist is
	// no business of theirs (public apps aside).
	signIn := func() error {
		if wantsHTML(r) {
			self := s.appOrigin(appName, wsName, owner)
			self.Path, self.RawPath, self.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
			http.Redirect(w, r, s.accessURL.String()+"/api/v2/applications/auth-redirect?redirect_uri="+url.QueryEscape(self.String()), http.StatusSeeOther)
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
	t := appTarget{ws: ws, app: app, rest: r.URL.Path}
	if err := authorizeApp(caller, t); err != nil {
		if caller == nil {
			return signIn()
		}
		return err
	}
	if app.Share != tether.SharePublic && changesState(r) {
		// The app token is a cookie, which the same site's other pages
		// (another user's app) can make the browser send: a request that
		// changes something must come from the app's own pages.
		appOrigin := s.appOrigin(appName, wsName, owner)
		if err := checkOrigin(r, appOrigin, false, "the app's own pages at "+origin(appOrigin)); err != nil {
			return err
		}
	}
	return s.proxyApp(w, r, t)
}

// appCaller returns the user whose app token the request carries for
// host, nil if none. The token's session and user are checked on every
// use, so that signing out (or anything else that ends the session) ends
// the token at once.
func (s *Server) appCaller(r *http.Request, host string) (*store.User, error) {
	token, err := singleCookie(r, s.appTokenCookieName())
	if err != nil || token == "" {
		return nil, err
	}
	g, ok := s.appTokens.lookup(token, host, s.now())
	if !ok {
		return nil, nil
	}
	_, u, err := s.sessionUser(r.Context(), g.sessionHash)
	if err != nil {
		if tether.ErrorCode(err) == tether.EUNAUTHORIZED {
			s.appTokens.revokeSession(g.sessionHash)
			return nil, nil
		}
		return nil, err
	}
	if u.ID != g.userID {
		return nil, nil
	}
	return &u, nil
}

// appTokenCookieName is the app token's cookie on app hosts: __Host- on
// https, so that no other app of the site can set or shadow it.
func (s *Server) appTokenCookieName() string {
	if s.wildcard != nil && s.wildcard.scheme == "https" {
		return appTokenCookieSecure
	}
	return appTokenCookie
}

// appAuthRedirect runs on the access URL: it checks that the signed-in user
// may open the app named by redirect_uri and sends them back with a
// one-time code. It changes state (it mints the code) on a GET, so any page
// can make a browser come here; that is harmless by construction: the code
// goes only to the canonical origin of an app the user may open anyway,
// where the server itself (not the app) redeems it.
func (s *Server) appAuthRedirect(w http.ResponseWriter, r *http.Request) error {
	if s.wildcard == nil {
		return tether.Errorf(tether.ENOTFOUND, "this server has no --wildcard-access-url, so no subdomain apps")
	}
	target, err := url.Parse(r.URL.Query().Get("redirect_uri"))
	if err != nil || target.Host == "" {
		return tether.Errorf(tether.EINVALID, "redirect_uri must be the URL of a subdomain app")
	}
	appName, wsName, owner, ok := s.wildcard.appHost(target.Host)
	if !ok {
		return tether.Errorf(tether.EINVALID, "redirect_uri %.100s is not a subdomain app of this server", target.Host)
	}
	sess, u, err := s.authenticateSession(r)
	if err != nil {
		http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil
	}
	ws, app, err := s.resolveApp(r.Context(), owner, wsName, appName)
	if err != nil {
		return err
	}
	if err := authorizeApp(&u, appTarget{ws: ws, app: app}); err != nil {
		return err
	}
	code := s.appTokens.issueCode(appGrant{
		userID:         u.ID,
		sessionHash:    sess.TokenHash,
		host:           s.wildcard.appHostname(appName, wsName, owner),
		sessionExpires: sess.ExpiresAt,
	}, s.now())
	back := s.appOrigin(appName, wsName, owner)
	back.Path = appAuthPath
	back.RawQuery = url.Values{appAuthCodeParam: {code}, "path": {target.RequestURI()}}.Encode()
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, back.String(), http.StatusSeeOther)
	return nil
}

// finishAppAuth runs on the app host: it redeems the one-time code for a
// token in a host-only cookie and goes on to the page first asked for, on
// this host whatever the path says.
func (s *Server) finishAppAuth(w http.ResponseWriter, r *http.Request, appName, wsName, owner string) error {
	host := s.wildcard.appHostname(appName, wsName, owner)
	token, g, ok := s.appTokens.redeem(r.URL.Query().Get(appAuthCodeParam), host, s.now())
	if !ok {
		return tether.Errorf(tether.EUNAUTHORIZED, "the app sign-in link is invalid, expired or used already: open the app again from the dashboard")
	}
	if _, _, err := s.sessionUser(r.Context(), g.sessionHash); err != nil {
		s.appTokens.revokeSession(g.sessionHash)
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: s.appTokenCookieName(), Value: token, Path: "/", HttpOnly: true,
		Secure: s.wildcard.scheme == "https", SameSite: http.SameSiteLaxMode,
		Expires: g.expires,
	})
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, sameOriginURL(s.appOrigin(appName, wsName, owner), r.URL.Query().Get("path")), http.StatusSeeOther)
	return nil
}
