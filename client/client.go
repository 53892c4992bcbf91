// Package client is the Go client of Tether's REST API, used by the CLI and
// the agent. It turns API errors back into *tether.Error values so callers
// can tell them apart by code.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether"
)

// Client talks to one server as one user or one agent.
type Client struct {
	// URL is the server's base URL (the access URL).
	URL *url.URL
	// SessionToken authenticates a user; AgentToken an agent.
	SessionToken string
	AgentToken   string
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// New returns a client for the server at rawURL.
func New(rawURL string) (*Client, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return &Client{URL: u}, nil
}

// ParseURL checks that s is a server URL (http or https, with a host) and
// returns it without a trailing slash.
func ParseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("no server URL: pass one, or run `tether login URL` first")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not a server URL such as https://tether.example.com", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// endpoint returns the absolute URL of an API path.
func (c *Client) endpoint(path string) string {
	return c.URL.String() + path
}

func (c *Client) authorize(h http.Header) {
	if c.SessionToken != "" {
		h.Set(tether.SessionTokenHeader, c.SessionToken)
	}
	if c.AgentToken != "" {
		h.Set(tether.AgentTokenHeader, c.AgentToken)
	}
}

// do sends a request with an optional JSON body and decodes a JSON response
// into out (unless out is nil). Non-2xx responses become *tether.Error.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.doHeader(ctx, method, path, body, out)
	return err
}

// doHeader is do that also returns the response's header.
func (c *Client) doHeader(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req.Header)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp.Header, readError(resp)
	}
	if out == nil {
		return resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.Header, fmt.Errorf("read response of %s %s: %w", method, path, err)
	}
	return resp.Header, nil
}

// maxPages bounds how many pages listAll follows, against a server that
// links pages in a circle.
const maxPages = 100_000

// listAll gets every page of a list endpoint (see tether.DefaultPageSize),
// following each response's link to the next page, and returns the items
// in order.
func listAll[T any](ctx context.Context, c *Client, path string, query url.Values) ([]T, error) {
	if query == nil {
		query = url.Values{}
	}
	query.Set("limit", strconv.Itoa(tether.MaxPageSize))
	all := []T{}
	for range maxPages {
		var page []T
		h, err := c.doHeader(ctx, http.MethodGet, path+"?"+query.Encode(), nil, &page)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		after, ok := nextCursor(h)
		if !ok {
			return all, nil
		}
		if after == query.Get("after") {
			return nil, fmt.Errorf("list %s: the server sent the same page twice", path)
		}
		query.Set("after", after)
	}
	return nil, fmt.Errorf("list %s: more than %d pages", path, maxPages)
}

// nextCursor reads the after parameter of a response's Link rel="next".
func nextCursor(h http.Header) (string, bool) {
	for _, v := range h.Values("Link") {
		for _, link := range strings.Split(v, ",") {
			ref, params, ok := strings.Cut(strings.TrimSpace(link), ";")
			if !ok || !strings.Contains(strings.NewReplacer(" ", "", `"`, "").Replace(params), "rel=next") {
				continue
			}
			ref = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ref), "<"), ">")
			u, err := url.Parse(ref)
			if err != nil {
				continue
			}
			if after := u.Query().Get("after"); after != "" {
				return after, true
			}
		}
	}
	return "", false
}

// unreachable describes a request that got no answer at all.
func (c *Client) unreachable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if certificateProblem(err) {
		// The server answered: asking whether it runs would mislead.
		return &tether.Error{Code: tether.EUNAVAILABLE,
			Message: fmt.Sprintf("this machine does not trust the certificate of %s: if the deployment uses a certificate authority of its own, add it to the system's trusted certificates or name its file in SSL_CERT_FILE", c.URL),
			Detail:  unwrapURLError(err).Error()}
	}
	return &tether.Error{Code: tether.EUNAVAILABLE,
		Message: fmt.Sprintf("cannot reach the Tether server at %s (is it running, and is that its URL?)", c.URL),
		Detail:  unwrapURLError(err).Error()}
}

// certificateProblem reports whether err is a TLS certificate that did not
// verify: unknown authority, wrong host, expired.
func certificateProblem(err error) bool {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// unwrapURLError drops url.Error's repetition of the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// codeForStatus guesses an error code for responses that carry none (a
// proxy's error page, say).
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return tether.EINVALID
	case http.StatusUnauthorized:
		return tether.EUNAUTHORIZED
	case http.StatusForbidden:
		return tether.EFORBIDDEN
	case http.StatusNotFound:
		return tether.ENOTFOUND
	case http.StatusConflict:
		return tether.ECONFLICT
	case http.StatusRequestEntityTooLarge:
		return tether.ETOOLARGE
	case http.StatusTooManyRequests:
		return tether.ETOOMANY
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return tether.EUNAVAILABLE
	case http.StatusInsufficientStorage:
		return tether.ESTORAGEFULL
	}
	return tether.EINTERNAL
}

// readError turns an error response into a *tether.Error.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er tether.ErrorResponse
	if json.Unmarshal(b, &er) == nil && er.Message != "" {
		code := er.Code
		if code == "" {
			code = codeForStatus(resp.StatusCode)
		}
		return &tether.Error{Code: code, Message: er.Message, Detail: er.Detail}
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return &tether.Error{Code: codeForStatus(resp.StatusCode),
		Message: fmt.Sprintf("server answered %s", resp.Status), Detail: msg}
}

// DialWebSocket opens a WebSocket to an API path, authenticated like other
// requests. Refusals come back as *tether.Error.
func (c *Client) DialWebSocket(ctx context.Context, path string, query url.Values) (*websocket.Conn, error) {
	u := *c.URL
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	default:
		u.Scheme = "ws"
	}
	u.Path += path
	u.RawQuery = query.Encode()
	h := http.Header{}
	c.authorize(h)
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.httpClient(), HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			return nil, readError(resp)
		}
		return nil, c.unreachable(ctx, err)
	}
	return conn, nil
}
