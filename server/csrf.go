package server

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/tetherdev/tether"
)

// Cross-site request forgery. A browser attaches the dashboard's session
// cookie to requests that any page makes to the dashboard, and SameSite=Lax
// does not stop pages of the same site: a subdomain app at
// APP--WS--USER.apps.example.com is same-site with tether.example.com, and
// its page can send a "simple" request (fetch with mode no-cors, a form)
// of any method the CORS rules call simple, with any body, and no
// Content-Type at all. Checking the content type or the route therefore
// does not help; the server checks the request's provenance instead, for
// every route at once, before any handler runs:
//
//   - Requests that only read (GET, HEAD, OPTIONS, except WebSocket
//     upgrades, which open a two-way channel) pass.
//   - Requests with a token header (session, agent, or bearer
//     Authorization) pass: no page can make a browser send one to another
//     origin, since that needs a CORS preflight the server never grants.
//   - A request with an Origin header passes only if it is exactly the
//     access URL's origin. This covers unauthenticated requests too, such
//     as a foreign page signing the browser in to an account of its
//     choosing (login CSRF).
//   - Without Origin, a request that Sec-Fetch-Site marks as coming from
//     another site or origin is refused; one with the session cookie must
//     carry the tether.CSRFHeader, which the dashboard sends and no
//     cross-site page can.
//
// coder/websocket's Accept also refuses WebSockets whose Origin is not the
// request's host; the check here comes first, so that no handler starts
// work (a terminal session, say) for a page that may not use it.

// changesState reports whether a request may change something, or open a
// channel that can: anything but GET, HEAD and OPTIONS, and WebSockets.
func changesState(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return isWebSocketUpgrade(r)
	}
	return true
}

// isWebSocketUpgrade reports whether r asks to become a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "websocket") {
				return true
			}
		}
	}
	return false
}

// origin is a URL's origin in the form browsers send in the Origin header:
// lowercase scheme and host, the port only when it is not the scheme's
// default.
func origin(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}

// sameOrigin reports whether an Origin header names exactly base's origin.
func sameOrigin(header string, base *url.URL) bool {
	u, err := url.Parse(header)
	if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false
	}
	return origin(u) == origin(base)
}

// crossSite is the refusal of a request that did not prove it came from
// where it must.
func crossSite(from, want string) error {
	return &tether.Error{Code: tether.EFORBIDDEN,
		Message: "cross-site request refused: requests that change something in a browser must come from " + want,
		Detail:  from}
}

// checkProvenance applies the rules above to a request for the dashboard's
// origin (the API, the dashboard and path-based apps).
func (s *Server) checkProvenance(r *http.Request) error {
	if !changesState(r) || hasHeaderCredential(r) {
		return nil
	}
	want := "the dashboard at " + origin(s.accessURL)
	return checkOrigin(r, s.accessURL, hasSessionCookie(r), want)
}

// checkOrigin refuses a state-changing request whose Origin is not base's,
// or which lacks an Origin, is signed in by a cookie (withCookie) and
// carries no tether.CSRFHeader.
func checkOrigin(r *http.Request, base *url.URL, withCookie bool, want string) error {
	if values := r.Header.Values("Origin"); len(values) > 0 {
		if len(values) == 1 && sameOrigin(values[0], base) {
			return nil
		}
		from := strings.Join(values, ", ")
		if len(from) > 100 {
			from = from[:100] + "…"
		}
		return crossSite("the request came from "+from, want)
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return crossSite("the browser says the request came from a "+site+" page", want)
	}
	if withCookie && r.Header.Get(tether.CSRFHeader) == "" {
		return crossSite("a request signed in by the browser's cookie carried neither an Origin header nor "+tether.CSRFHeader, want)
	}
	return nil
}
