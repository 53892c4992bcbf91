package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/store"
)

// ProxyAuthPath is where a workspace proxy redeems a hand-off token, on its
// access URL and on each of its subdomain app hosts; HandoffParam carries
// the token there, and the page first asked for is in the query "path".
const (
	ProxyAuthPath = "/__tether/proxy-auth"
	HandoffParam  = "tether_handoff"
)

// ParseTerminalPath splits "/@USER/WS/terminal" (with or without a
// trailing slash), the web terminal's page, into its parts.
func ParseTerminalPath(p string) (owner, ws string, ok bool) {
	rest, found := strings.CutPrefix(p, "/@")
	if !found {
		return "", "", false
	}
	rest = strings.TrimSuffix(rest, "/")
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] != "terminal" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// proxyAuthRedirect runs on the primary: a proxy sends browsers here for
// what they hold no grant for, naming the page in redirect_uri. The
// primary decides by the same rules as for its own terminal and apps, and
// sends the browser back to the proxy with a hand-off token for exactly
// that: one user (or nobody, for a public app), one workspace, and the
// terminal or one app. Like the app sign-in redirect, it mints on a GET;
// the token goes only to the registered proxy that serves the page, and
// only that proxy's server (not an app) redeems it.
func (s *Server) proxyAuthRedirect(w http.ResponseWriter, r *http.Request) error {
	target, err := url.Parse(r.URL.Query().Get("redirect_uri"))
	if err != nil || target.Host == "" || target.User != nil {
		return tether.Errorf(tether.EINVALID, "redirect_uri must be the URL of a page on a workspace proxy")
	}
	p, wc, ok := s.proxyByHost(target.Host)
	if !ok {
		return tether.Errorf(tether.EINVALID, "redirect_uri %.100s is not on a healthy workspace proxy of this deployment", target.Host)
	}
	proxyURL, err := url.Parse(p.URL)
	if err != nil || target.Scheme != proxyURL.Scheme {
		return tether.Errorf(tether.EINVALID, "redirect_uri must use the proxy's scheme %s", proxyURL.Scheme)
	}
	var caller *store.User
	sess, u, authErr := s.authenticateSession(r)
	if authErr == nil {
		caller = &u
	}
	signIn := func() error {
		http.Redirect(w, r, "/login?redirect="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return nil
	}
	// The proxy as stored now, not as last polled: a grant names the
	// proxy's current token (proxyTokenGeneration).
	p, err = s.store.WorkspaceProxyByName(r.Context(), p.Name)
	if errors.Is(err, store.ErrNotFound) {
		return tether.Errorf(tether.EINVALID, "redirect_uri %.100s is not on a healthy workspace proxy of this deployment", target.Host)
	} else if err != nil {
		return err
	}
	now := s.now()
	c := handoff.Claims{ID: newToken(), Proxy: p.ID, IssuedAt: now.Unix(), Expires: now.Add(handoff.Lifetime).Unix(),
		Generation: proxyTokenGeneration(p)}
	if caller != nil {
		c.User, c.Username, c.Session = u.ID, u.Username, sess.TokenHash
	}
	// openApp checks an app as servePathApp and serveSubdomainApp do.
	openApp := func(owner, wsName, appName string, pathBased bool) (handled bool, err error) {
		ws, app, err := s.resolveApp(r.Context(), owner, wsName, appName)
		if err != nil {
			if caller == nil && tether.ErrorCode(err) == tether.ENOTFOUND {
				return true, signIn()
			}
			return true, err
		}
		t := appTarget{ws: ws, app: app}
		if err := authorizeApp(caller, t); err != nil {
			if caller == nil {
				return true, signIn()
			}
			return true, err
		}
		if pathBased {
			if err := s.pathAppOrigin(caller, t); err != nil {
				if caller == nil {
					return true, signIn()
				}
				return true, err
			}
		}
		c.Scope, c.App = handoff.ScopeApp, &app
		c.Workspace, c.WorkspaceName, c.OwnerID, c.Owner = ws.ID, ws.Name, ws.OwnerID, ws.Owner
		return false, nil
	}
	back := &url.URL{Scheme: target.Scheme, Host: target.Host}
	if appName, wsName, owner, isApp := wc.appHost(target.Host); isApp {
		if handled, err := openApp(owner, wsName, appName, false); handled {
			return err
		}
		c.Host = wc.appHostname(appName, wsName, owner)
	} else if strings.EqualFold(target.Host, proxyURL.Host) {
		if owner, wsName, appName, _, ok := parseAppPath(target.Path); ok {
			if handled, err := openApp(owner, wsName, appName, true); handled {
				return err
			}
		} else if owner, wsName, ok := ParseTerminalPath(target.Path); ok {
			if caller == nil {
				return signIn()
			}
			ws, err := s.lookupWorkspaceNamed(r.Context(), u, owner, wsName)
			if err != nil {
				return err
			}
			c.Scope = handoff.ScopeTerminal
			c.Workspace, c.WorkspaceName, c.OwnerID, c.Owner = ws.ID, ws.Name, ws.OwnerID, ws.Owner
		} else {
			return tether.Errorf(tether.EINVALID, "redirect_uri %.100s is neither a terminal nor an app on the proxy", target.Path)
		}
	} else {
		return tether.Errorf(tether.EINVALID, "redirect_uri %.100s is not on a workspace proxy", target.Host)
	}
	priv, err := s.handoffKey(r.Context())
	if err != nil {
		return err
	}
	token, err := handoff.Sign(priv, c)
	if err != nil {
		return fmt.Errorf("sign hand-off token: %w", err)
	}
	back.Path = ProxyAuthPath
	back.RawQuery = url.Values{HandoffParam: {token}, "path": {target.RequestURI()}}.Encode()
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, back.String(), http.StatusSeeOther)
	return nil
}
