package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/derp/derpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// The library ceiling: two tunnel.Conn in this process and a DERP relay on
// httptest, as tunnel's own tests build them, with nothing of the product
// around them (no coordinator, no CLI, no agent). What the product reaches
// is compared with this.

// relay is a DERP server on loopback.
type relay struct {
	d   *derpserver.Server
	srv *httptest.Server
	dm  *tailcfg.DERPMap
}

// startRelay runs a DERP relay over plain HTTP, as `tether server` serves
// it at an http:// access URL, with STUN disabled: on loopback the peers
// find each other through the local endpoints they publish.
func startRelay(log *slog.Logger) *relay {
	logf := logger.Discard
	if log.Enabled(context.Background(), slog.LevelDebug) {
		logf = func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...)) }
	}
	d := derpserver.New(key.NewNode(), logf)
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Config.ErrorLog = logger.StdLogger(logf)
	// DERP upgrades need HTTP/1.1 connection hijacking.
	srv.Config.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	srv.Start()
	node := &tailcfg.DERPNode{
		Name:     "1a",
		RegionID: 1,
		HostName: "127.0.0.1",
		IPv4:     "127.0.0.1",
		IPv6:     "none",
		STUNPort: -1,
		DERPPort: srv.Listener.Addr().(*net.TCPAddr).Port,
	}
	return &relay{d: d, srv: srv, dm: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {RegionID: 1, RegionCode: "bench", RegionName: "Bench", Nodes: []*tailcfg.DERPNode{node}},
	}}}
}

func (r *relay) close() {
	r.srv.CloseClientConnections()
	r.srv.Close()
	r.d.Close()
}

// newPeer starts a tunnel peer on the relay; relayOnly blocks direct paths.
func newPeer(ctx context.Context, log *slog.Logger, dm *tailcfg.DERPMap, relayOnly bool) (*tunnel.Conn, error) {
	return tunnel.New(ctx, tunnel.Options{
		Logger:         log,
		ID:             uuid.New(),
		DERPMap:        dm,
		BlockEndpoints: relayOnly,
		// Process-wide in the library; this process runs no other relay
		// client, so it affects nothing else.
		DERPPlainHTTP: true,
	})
}

// introduce makes the Conns peers of each other, as the coordinator would:
// each one's node goes to the others, now and on every change.
func introduce(conns ...*tunnel.Conn) {
	for _, from := range conns {
		from.SetNodeCallback(func(n *tether.Node) {
			for _, to := range conns {
				if to != from {
					to.UpsertPeer(from.ID(), n) // fails only once closed
				}
			}
		})
	}
}

// pair is two introduced peers.
type pair struct{ a, b *tunnel.Conn }

func newPair(ctx context.Context, log *slog.Logger, dm *tailcfg.DERPMap, relayOnly bool) (*pair, error) {
	a, err := newPeer(ctx, log.With("peer", "a"), dm, relayOnly)
	if err != nil {
		return nil, err
	}
	b, err := newPeer(ctx, log.With("peer", "b"), dm, relayOnly)
	if err != nil {
		a.Close()
		return nil, err
	}
	introduce(a, b)
	return &pair{a, b}, nil
}

func (p *pair) close() {
	// Concurrently: each Close takes a while to wind the engine down.
	var wg sync.WaitGroup
	for _, c := range []*tunnel.Conn{p.a, p.b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
}

// awaitPath pings from a to b until the pong's path is the wanted one.
func (p *pair) awaitPath(ctx context.Context, direct bool) error {
	return awaitPath(ctx, p.a, p.b.Addr(), direct)
}

// awaitPath pings peer from c until the pong's path is the wanted one.
func awaitPath(ctx context.Context, c *tunnel.Conn, peer netip.Addr, direct bool) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var last tunnel.PingResult
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		r, err := c.Ping(pctx, peer)
		pcancel()
		if err == nil {
			if r.Direct == direct {
				return nil
			}
			last = r
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("path never became direct=%v (last pong %+v): %w", direct, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const libraryPort = 5201

// runLibrary measures the ceiling: a one-connection download between two
// bare tunnel peers, direct and through DERP.
func runLibrary(ctx context.Context, cfg *config, res *results) error {
	r := startRelay(cfg.log)
	defer r.close()
	for _, tc := range []struct {
		name      string
		relayOnly bool
	}{
		{"library/direct", false},
		{"library/derp", true},
	} {
		if err := libraryTransfer(ctx, cfg, res, r, tc.name, tc.relayOnly); err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
	}
	return nil
}

func libraryTransfer(ctx context.Context, cfg *config, res *results, r *relay, name string, relayOnly bool) error {
	p, err := newPair(ctx, cfg.log, r.dm, relayOnly)
	if err != nil {
		return err
	}
	defer p.close()
	ln, err := p.b.Listen("tcp", libraryPort)
	if err != nil {
		return err
	}
	src := serve(ln, source)
	defer src.close()
	eln, err := p.b.Listen("tcp", libraryEchoPort)
	if err != nil {
		return err
	}
	ech := serve(eln, echo)
	defer ech.close()
	dial := func(ctx context.Context) (net.Conn, error) {
		return p.a.DialContext(ctx, "tcp", netip.AddrPortFrom(p.b.Addr(), libraryPort))
	}
	// Some traffic first (paths go direct once data flows), then make sure
	// the path is the one we mean to measure.
	c, err := dial(ctx)
	if err != nil {
		return err
	}
	err = drain(c, 200*time.Millisecond)
	c.Close()
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := p.awaitPath(ctx, !relayOnly); err != nil {
		return err
	}
	mbps, rates, err := measureDownload(ctx, dial, cfg.warm, cfg.duration, cfg.runs)
	if err != nil {
		return err
	}
	path := "direct"
	if relayOnly {
		path = "DERP over plain HTTP (both peers block endpoints)"
	}
	res.higher(name, mbps, "MB/s", ratesNote(rates)+"down, one connection, "+path)

	conn, err := p.a.DialContext(ctx, "tcp", netip.AddrPortFrom(p.b.Addr(), libraryEchoPort))
	if err != nil {
		return err
	}
	defer conn.Close()
	ds, err := roundTrips(conn, cfg.rttCount, rttSize, cfg.rttWarm)
	if err != nil {
		return fmt.Errorf("round trips: %w", err)
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d × %d B, %s", s.N, rttSize, path)
	res.lower(name+"/rtt-p50", micros(s.P50), "µs", note)
	res.lower(name+"/rtt-p99", micros(s.P99), "µs", note)
	return nil
}

// runFirstByte times fresh pairs of peers from tunnel.New to the first
// byte echoed back, which a WireGuard handshake lost before both peers
// hold their relay connection would stretch to 5 s.
func runFirstByte(ctx context.Context, cfg *config, res *results) error {
	r := startRelay(cfg.log)
	defer r.close()
	var ds []time.Duration
	for range cfg.firstByteRuns {
		d, err := firstByte(ctx, cfg, r)
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	s := summarize(ds)
	note := fmt.Sprintf("%d fresh pairs, New to echo", s.N)
	res.lower("library/first-byte-p50", millis(s.P50), "ms", note)
	res.lower("library/first-byte-max", millis(s.Max), "ms", note)
	return nil
}

func firstByte(ctx context.Context, cfg *config, r *relay) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, firstByteTimeout)
	defer cancel()
	t0 := time.Now()
	p, err := newPair(ctx, cfg.log, r.dm, false)
	if err != nil {
		return 0, err
	}
	defer p.close()
	ln, err := p.b.Listen("tcp", libraryPort)
	if err != nil {
		return 0, err
	}
	ech := serve(ln, echo)
	defer ech.close()
	c, err := p.a.DialContext(ctx, "tcp", netip.AddrPortFrom(p.b.Addr(), libraryPort))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(firstByteTimeout))
	if _, err := c.Write([]byte{42}); err != nil {
		return 0, err
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return 0, err
	}
	if b[0] != 42 {
		return 0, errors.New("echo returned another byte")
	}
	return time.Since(t0), nil
}
