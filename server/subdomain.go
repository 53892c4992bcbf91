package server

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// Subdomain apps live at APP--WS--USER.<wildcard domain>, an origin of their
// own. Browsers carry no dashboard cookie there, so the server hands each
// app host a token of its own:
//
//  1. A request without a valid token for a non-public app is redirected to
//     /api/v2/applications/auth-redirect on the access URL.
//  2. There the user is signed in (or sent to sign in); the server checks
//     that they may open the app and redirects back to the app host's
//     /__tether/app-auth with a fresh token.
//  3. The app host sets the token as a host-only cookie and redirects to the
//     page first asked for.
//
// Tokens are valid for one host and appTokenLifetime, and are kept in
// memory: a restarted server sends browsers through the redirect again.

const (
	appTokenCookie   = "tether_app_token"
	appAuthPath      = "/__tether/app-auth"
	appTokenLifetime = 24 * time.Hour
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

// subdomainAppURL is the root URL of a subdomain app, with a trailing slash.
func (s *Server) subdomainAppURL(ws store.Workspace, app tether.App) string {
	host := app.Name + "--" + ws.Name + "--" + ws.Owner + s.wildcard.suffix
	return s.wildcard.scheme + "://" + s.wildcard.hostPort(host) + "/"
}

type appToken struct {
	userID  uuid.UUID
	host    string
	expires time.Time
}

// appTokens are the issued subdomain app tokens, by hash.
type appTokens struct {
	mu sync.Mutex
	m  map[string]appToken
}

func (t *appTokens) issue(userID uuid.UUID, host string, now time.Time) string {
	token := newToken()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]appToken{}
	}
	t.m[store.HashToken(token)] = appToken{userID: userID, host: host, expires: now.Add(appTokenLifetime)}
	return token
}

// lookup returns the user of a token valid for host.
func (t *appTokens) lookup(token, host string, now time.Time) (uuid.UUID, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.m[store.HashToken(token)]
	if !ok || !strings.EqualFold(at.host, host) || now.After(at.expires) {
		return uuid.Nil, false
	}
	return at.userID, true
}

// expire drops tokens past their lifetime.
func (t *appTokens) expire(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, at := range t.m {
		if now.After(at.expires) {
			delete(t.m, k)
		}
	}
}

// serveSubdomainApp serves every request to an app host.
func (s *Server) serveSubdomainApp(w http.ResponseWriter, r *http.Request, appName, wsName, owner string) error {
	if r.URL.Path == appAuthPath {
		return s.finishAppAuth(w, r)
	}
	ws, app, err := s.resolveApp(r.Context(), owner, wsName, appName)
	if err != nil {
		return err
	}
	t := appTarget{ws: ws, app: app, rest: r.URL.Path}
	var caller *store.User
	if c, err := r.Cookie(appTokenCookie); err == nil {
		if uid, ok := s.appTokens.lookup(c.Value, r.Host, s.now()); ok {
			if u, err := s.store.UserByID(r.Context(), uid); err == nil {
				caller = &u
			}
		}
	}
	if err := authorizeApp(caller, t); err != nil {
		if caller == nil && wantsHTML(r) {
			self := s.wildcard.scheme + "://" + r.Host + r.URL.RequestURI()
			http.Redirect(w, r, s.accessURL.String()+"/api/v2/applications/auth-redirect?redirect_uri="+url.QueryEscape(self), http.StatusSeeOther)
			return nil
		}
		return err
	}
	return s.proxyApp(w, r, t)
}

// appAuthRedirect runs on the access URL: it checks that the signed-in user
// may open the app named by redirect_uri and sends them back with a token.
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
		return tether.Errorf(tether.EINVALID, "redirect_uri %s is not a subdomain app of this server", target.Host)
	}
	u, err := s.authenticateUser(r)
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
	token := s.appTokens.issue(u.ID, target.Host, s.now())
	path := target.EscapedPath()
	if path == "" {
		path = "/"
	}
	if target.RawQuery != "" {
		path += "?" + target.RawQuery
	}
	back := url.URL{Scheme: s.wildcard.scheme, Host: target.Host, Path: appAuthPath,
		RawQuery: url.Values{"token": {token}, "path": {path}}.Encode()}
	http.Redirect(w, r, back.String(), http.StatusSeeOther)
	return nil
}

// finishAppAuth runs on the app host: it stores the token as a host-only
// cookie and goes on to the page first asked for.
func (s *Server) finishAppAuth(w http.ResponseWriter, r *http.Request) error {
	token := r.URL.Query().Get("token")
	if _, ok := s.appTokens.lookup(token, r.Host, s.now()); !ok {
		return tether.Errorf(tether.EUNAUTHORIZED, "the app sign-in link is invalid or expired: open the app again from the dashboard")
	}
	http.SetCookie(w, &http.Cookie{
		Name: appTokenCookie, Value: token, Path: "/", HttpOnly: true,
		Secure: s.wildcard.scheme == "https", SameSite: http.SameSiteLaxMode,
		Expires: s.now().Add(appTokenLifetime),
	})
	path := r.URL.Query().Get("path")
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.HasPrefix(path, "/\\") {
		path = "/"
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
	return nil
}
