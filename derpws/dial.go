package derpws

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/net/tlsdial"
)

// Bounds of the package's own connections to relays.
const (
	dialTimeout  = 10 * time.Second // a probe, or a WebSocket handshake
	probeTimeout = 5 * time.Second  // each of a probe's two requests
	// wsReadLimit bounds one WebSocket message from a relay. The relay
	// writes each flush of its buffered writer as one message, and a DERP
	// frame holds up to 64 KiB of packet.
	wsReadLimit = 1 << 20
)

// scheme returns "https" or "http", as the library's client would use.
func (ri relayInfo) scheme() string {
	if ri.https {
		return "https"
	}
	return "http"
}

// url returns the relay's URL for path, with the port left out where it is
// the scheme's default (as the client writes its Host header).
func (ri relayInfo) url(scheme, path string) string {
	host, port, _ := net.SplitHostPort(ri.key)
	hostport := ri.key
	if (ri.https && port == "443") || (!ri.https && port == "80") {
		hostport = host
		if strings.Contains(host, ":") {
			hostport = "[" + host + "]"
		}
	}
	return scheme + "://" + hostport + path
}

// addr is where to open TCP to the relay: the node's IPv4 or IPv6 address
// if the map gives one (the client prefers them to resolving HostName).
func (ri relayInfo) addr() string {
	_, port, _ := net.SplitHostPort(ri.key)
	n := ri.node
	for _, ip := range []string{n.IPv4, n.IPv6} {
		if ip != "" && ip != "none" {
			return net.JoinHostPort(ip, port)
		}
	}
	return ri.key
}

// urlAddr is the host:port that net/http derives from url(…).
func (ri relayInfo) urlAddr() string {
	host, port, _ := net.SplitHostPort(ri.key)
	return net.JoinHostPort(host, port)
}

// tlsConfig verifies the relay as the library's client does: the node's
// pinned certificate (CertName) or InsecureForTests, else the system's
// roots with Tailscale's baked-in fallback.
func (ri relayInfo) tlsConfig() *tls.Config {
	conf := tlsdial.Config(nil, nil)
	conf.ServerName = ri.node.HostName
	conf.NextProtos = []string{"http/1.1"} // upgrades need HTTP/1.1
	switch n := ri.node; {
	case n.InsecureForTests:
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = nil
	case strings.HasPrefix(n.CertName, "sha256-raw:"):
		tlsdial.SetConfigExpectedCertHash(conf, strings.TrimPrefix(n.CertName, "sha256-raw:"))
	case n.CertName != "":
		tlsdial.SetConfigExpectedCert(conf, n.CertName)
	}
	return conf
}

// transport reaches the relay, through the user's proxy if they have one.
// Close its idle connections when done.
func (ri relayInfo) transport() *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == ri.urlAddr() {
				addr = ri.addr() // the relay itself, not a proxy
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     ri.tlsConfig(),
		TLSHandshakeTimeout: dialTimeout,
		// HTTP/2 has no upgrades; an empty map keeps it off.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
}

// dialWebSocket opens the relay's /derp as a WebSocket speaking "derp".
func dialWebSocket(ctx context.Context, ri relayInfo) (*websocket.Conn, error) {
	tr := ri.transport()
	defer tr.CloseIdleConnections()
	scheme := "ws"
	if ri.https {
		scheme = "wss"
	}
	c, resp, err := websocket.Dial(ctx, ri.url(scheme, "/derp"), &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		Subprotocols:    []string{"derp"},
		CompressionMode: websocket.CompressionDisabled, // WireGuard does not compress
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("WebSocket to %s: %s: %w", ri.key, resp.Status, err)
		}
		return nil, fmt.Errorf("WebSocket to %s: %w", ri.key, err)
	}
	if c.Subprotocol() != "derp" {
		c.CloseNow()
		return nil, fmt.Errorf("WebSocket to %s: the relay did not agree to the derp subprotocol", ri.key)
	}
	c.SetReadLimit(wsReadLimit)
	return c, nil
}

// dialTCP opens a byte stream to the relay, through the user's proxy (with
// CONNECT) if they have one, for relays that the bridge passes through.
func dialTCP(ctx context.Context, ri relayInfo) (net.Conn, error) {
	var d net.Dialer
	target := &url.URL{Scheme: "https", Host: ri.urlAddr()}
	proxy, err := http.ProxyFromEnvironment(&http.Request{URL: target})
	if err != nil || proxy == nil {
		return d.DialContext(ctx, "tcp", ri.addr())
	}
	port := proxy.Port()
	if port == "" {
		port = "80"
		if proxy.Scheme == "https" {
			port = "443"
		}
	}
	var c net.Conn
	if proxy.Scheme == "https" {
		td := &tls.Dialer{NetDialer: &d, Config: &tls.Config{ServerName: proxy.Hostname()}}
		c, err = td.DialContext(ctx, "tcp", net.JoinHostPort(proxy.Hostname(), port))
	} else {
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(proxy.Hostname(), port))
	}
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	auth, _ := basicAuthHeader(proxy)
	if auth != "" {
		auth = "Proxy-Authorization: " + auth + "\r\n"
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", ri.key, ri.key, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy %s: %w", proxy.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT to %s: %s", proxy.Host, ri.key, resp.Status)
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, errors.New("proxy sent data before the relay spoke")
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// verdict is what a probe found out about a relay.
type verdict int

const (
	unreachable  verdict = iota // neither plain DERP nor WebSocket answered
	plainDERP                   // "Upgrade: DERP" is answered with 101
	useWebSocket                // refused, but WebSocket is accepted
)

func (v verdict) String() string {
	switch v {
	case plainDERP:
		return "plain DERP"
	case useWebSocket:
		return "WebSocket"
	}
	return "unreachable"
}

type probeResult struct {
	verdict verdict
	detail  string // why: the refusal, or the errors
}

// probe asks the relay for DERP's own upgrade, as the library's client
// does, and when that is refused (any answer but 101), for a WebSocket.
// A network error is not a refusal: the relay may be down, and WebSocket
// would not help.
func probe(ctx context.Context, ri relayInfo) probeResult {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	tr := ri.transport()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, ri.url(ri.scheme(), "/derp"), nil)
	if err != nil {
		return probeResult{unreachable, err.Error()}
	}
	req.Header.Set("Upgrade", "DERP")
	req.Header.Set("Connection", "Upgrade")
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := hc.Do(req)
	if err != nil {
		return probeResult{unreachable, err.Error()}
	}
	resp.Body.Close() // for a 101, this closes the upgraded connection
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return probeResult{plainDERP, ""}
	}
	refusal := "HTTP " + strconv.Itoa(resp.StatusCode)
	if resp.Status != "" {
		refusal = resp.Status
	}
	wctx, wcancel := context.WithTimeout(ctx, probeTimeout)
	defer wcancel()
	c, err := dialWebSocket(wctx, ri)
	if err != nil {
		return probeResult{unreachable, refusal + "; " + err.Error()}
	}
	c.CloseNow()
	return probeResult{useWebSocket, refusal}
}
