package derpws

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"tailscale.com/derp"
)

// handshakeTimeout bounds the CONNECT and the client's TLS and upgrade
// request, before bytes flow.
const handshakeTimeout = 15 * time.Second

// copyBuffer is the size of one WebSocket message towards the relay: below
// the 32 KiB that the relay's WebSocket library accepts by default.
const copyBuffer = 16 << 10

// bridge is the in-process CONNECT endpoint that the hook hands the
// library's client for relays that use WebSocket.
type bridge struct {
	ln     net.Listener
	url    *url.URL // the proxy URL the hook returns, with credentials
	auth   string   // the Proxy-Authorization value it expects
	lookup func(key string) (info relayInfo, ws bool, cert *localCert, ok bool)
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // accepted, not yet closed
}

func startBridge(ctx context.Context, lookup func(string) (relayInfo, bool, *localCert, bool), logger *slog.Logger) (*bridge, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if ln, err = net.Listen("tcp", "[::1]:0"); err != nil {
			return nil, fmt.Errorf("listen on loopback: %w", err)
		}
	}
	// Credentials keep other local users from borrowing the bridge.
	secret := make([]byte, 16)
	rand.Read(secret)
	u := &url.URL{Scheme: "http", Host: ln.Addr().String(), User: url.UserPassword("tether", hex.EncodeToString(secret))}
	auth, _ := basicAuthHeader(u)
	ctx, cancel := context.WithCancel(ctx)
	b := &bridge{
		ln: ln, url: u, auth: auth, lookup: lookup, logger: logger,
		ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{}),
	}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *bridge) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.conns == nil { // closing
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = struct{}{}
		b.wg.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.wg.Done()
			b.handle(c)
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
			c.Close()
		}()
	}
}

// close stops accepting, ends the connections it carries and waits.
func (b *bridge) close() {
	b.cancel()
	b.ln.Close()
	b.mu.Lock()
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	b.wg.Wait()
}

// handle serves one CONNECT from the library's client.
func (b *bridge) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	switch {
	case req.Method != http.MethodConnect:
		writeStatus(c, http.StatusMethodNotAllowed, "only CONNECT")
		return
	case subtle.ConstantTimeCompare([]byte(req.Header.Get("Proxy-Authorization")), []byte(b.auth)) != 1:
		writeStatus(c, http.StatusProxyAuthRequired, "")
		return
	}
	info, ws, cert, ok := b.lookup(req.Host)
	if !ok {
		writeStatus(c, http.StatusForbidden, "not a relay of this process")
		return
	}
	log := b.logger.With("relay", info.key)
	if !ws {
		// Another relay on the same host uses WebSocket, and the hook
		// cannot tell them apart (it learns no port): pass this one
		// through untouched.
		b.passThrough(c, br, info, log)
		return
	}
	if br.Buffered() > 0 {
		return // the client speaks only after our answer
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	conn := c
	if info.https {
		if cert == nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert.cert}, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(b.ctx); err != nil {
			log.Debug("DERP over WebSocket: client TLS failed", "err", err)
			return
		}
		conn = tc
	}
	rd := bufio.NewReaderSize(conn, copyBuffer)
	req, err = http.ReadRequest(rd)
	if err != nil {
		return
	}
	if !strings.EqualFold(req.Header.Get("Upgrade"), "derp") {
		b.forward(conn, req, info, log)
		return
	}
	dctx, cancel := context.WithTimeout(b.ctx, dialTimeout)
	wsc, err := dialWebSocket(dctx, info)
	cancel()
	if err != nil {
		log.Debug("DERP over WebSocket: dial failed", "err", err)
		writeStatus(conn, http.StatusBadGateway, err.Error())
		return
	}
	defer wsc.CloseNow()
	// With a fast start the client reads no HTTP answer (derp.Handler's
	// rule); the relay's first frame, its key, comes from the WebSocket.
	if req.Header.Get(derp.FastStartHeader) != "1" {
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n")
	}
	c.SetDeadline(time.Time{})
	log.Debug("DERP over WebSocket: connected")
	splice(conn, rd, websocket.NetConn(b.ctx, wsc, websocket.MessageBinary))
}

// forward answers a plain request (the library's HTTPS latency check) by
// asking the relay itself.
func (b *bridge) forward(conn net.Conn, req *http.Request, info relayInfo, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(b.ctx, probeTimeout)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, req.Method, info.url(info.scheme(), req.URL.RequestURI()), nil)
	if err != nil {
		writeStatus(conn, http.StatusBadRequest, err.Error())
		return
	}
	tr := info.transport()
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		log.Debug("DERP over WebSocket: forwarding failed", "path", req.URL.Path, "err", err)
		writeStatus(conn, http.StatusBadGateway, err.Error())
		return
	}
	defer resp.Body.Close()
	resp.Close = true
	resp.Write(conn)
}

// passThrough connects the client to the relay and copies bytes.
func (b *bridge) passThrough(c net.Conn, br *bufio.Reader, info relayInfo, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(b.ctx, dialTimeout)
	up, err := dialTCP(ctx, info)
	cancel()
	if err != nil {
		log.Debug("relay pass-through failed", "err", err)
		writeStatus(c, http.StatusBadGateway, err.Error())
		return
	}
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	c.SetDeadline(time.Time{})
	splice(c, br, up)
}

// splice copies between the client (read through rd) and the relay until
// either side ends, then closes both.
func splice(client net.Conn, rd io.Reader, relay net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		buf := make([]byte, copyBuffer)
		io.CopyBuffer(onlyWriter{relay}, onlyReader{rd}, buf)
		done <- struct{}{}
	}()
	go func() {
		buf := make([]byte, copyBuffer)
		io.CopyBuffer(onlyWriter{client}, onlyReader{relay}, buf)
		done <- struct{}{}
	}()
	<-done
	client.Close()
	relay.Close()
	<-done
}

// onlyWriter and onlyReader hide ReadFrom and WriteTo, so that
// io.CopyBuffer uses our buffer and each write towards the relay stays one
// WebSocket message of at most copyBuffer bytes.
type (
	onlyWriter struct{ io.Writer }
	onlyReader struct{ io.Reader }
)

func writeStatus(w io.Writer, code int, msg string) {
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(msg), msg)
}
