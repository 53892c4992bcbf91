package tunnel

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stunserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/tetherdev/tether"
)

// Shared timeouts, so that no test waits forever and none relies on sleeps.
const (
	testTimeout  = 20 * time.Second        // a whole test
	shortTimeout = 1500 * time.Millisecond // something expected NOT to happen
)

// debugLogs turns on the library's logs in tests: TETHER_TUNNEL_DEBUG=1.
var debugLogs = os.Getenv("TETHER_TUNNEL_DEBUG") != ""

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs through t, at Debug only when asked for.
func testLogger(t testing.TB, name string) *slog.Logger {
	level := slog.LevelInfo
	if debugLogs {
		level = slog.LevelDebug
	}
	h := slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})
	return slog.New(h).With("conn", name)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// derpOptions choose the relay a test runs.
type derpOptions struct {
	plainHTTP bool // serve plain HTTP instead of HTTPS with a pinned certificate
	stun      bool // run a STUN server too (otherwise STUN is disabled)
}

// newDERP runs a DERP relay on loopback and returns a one-region map for
// it (region 1, code "test"), with STUN disabled unless asked for.
func newDERP(t testing.TB, opts derpOptions) *tailcfg.DERPMap {
	t.Helper()
	dm, _ := newDERPServer(t, opts)
	return dm
}

// newDERPServer is newDERP, and returns the relay too.
func newDERPServer(t testing.TB, opts derpOptions) (*tailcfg.DERPMap, *derpserver.Server) {
	t.Helper()
	logf := logger.Discard
	if debugLogs {
		logf = t.Logf
	}
	d := derpserver.New(key.NewNode(), logf)
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Config.ErrorLog = logger.StdLogger(logf)
	// DERP upgrades need HTTP/1.1 connection hijacking.
	srv.Config.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	node := &tailcfg.DERPNode{
		Name:     "1a",
		RegionID: 1,
		HostName: "127.0.0.1",
		IPv4:     "127.0.0.1",
		IPv6:     "none",
		STUNPort: -1,
	}
	if opts.plainHTTP {
		srv.Start()
	} else {
		srv.StartTLS()
		node.CertName = fmt.Sprintf("sha256-raw:%x", sha256.Sum256(srv.Certificate().Raw))
	}
	node.DERPPort = srv.Listener.Addr().(*net.TCPAddr).Port
	if opts.stun {
		node.STUNPort = newSTUN(t)
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		d.Close()
	})
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{
		1: {RegionID: 1, RegionCode: "test", RegionName: "Test", Nodes: []*tailcfg.DERPNode{node}},
	}}, d
}

// newConn starts a Conn that is closed when the test ends.
func newConn(t testing.TB, name string, opts Options) *Conn {
	t.Helper()
	if opts.ID == uuid.Nil {
		opts.ID = uuid.New()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t, name)
	}
	c, err := New(testContext(t), opts)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// introduce makes a and b peers of each other, as the coordinator would:
// each one's node goes to the other's UpsertPeer, now and on every change.
func introduce(t testing.TB, conns ...*Conn) {
	t.Helper()
	for _, from := range conns {
		var to []*Conn
		for _, c := range conns {
			if c != from {
				to = append(to, c)
			}
		}
		from.SetNodeCallback(func(n *tether.Node) {
			for _, c := range to {
				if err := c.UpsertPeer(from.ID(), n); err != nil && !strings.Contains(err.Error(), "closed") {
					t.Errorf("upsert %s into %s: %v", from.ID(), c.ID(), err)
				}
			}
		})
	}
}

// pair starts two introduced Conns.
func pair(t testing.TB, dm *tailcfg.DERPMap, optsA, optsB Options) (a, b *Conn) {
	t.Helper()
	optsA.DERPMap, optsB.DERPMap = dm, dm
	a = newConn(t, "a", optsA)
	b = newConn(t, "b", optsB)
	introduce(t, a, b)
	return a, b
}

// listenEcho echoes every TCP connection to port on c until the test
// ends.
func listenEcho(t testing.TB, c *Conn, port uint16) {
	t.Helper()
	ln, err := c.Listen("tcp", port)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
}

// dialEcho starts an echo server on port of to (listenEcho) and returns
// from's TCP connection to it, which is closed when the test ends.
func dialEcho(t testing.TB, ctx context.Context, from, to *Conn, port uint16) net.Conn {
	t.Helper()
	listenEcho(t, to, port)
	conn, err := from.DialContext(ctx, "tcp", netip.AddrPortFrom(to.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// serveUDPEcho echoes every datagram on pc until pc closes.
func serveUDPEcho(t testing.TB, pc net.PacketConn) {
	done := make(chan struct{})
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// echoOnce writes msg to conn and expects it back before the deadline.
func echoOnce(conn net.Conn, msg string, deadline time.Time) error {
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo = %q, want %q", buf, msg)
	}
	return nil
}

// newSTUN runs a STUN server on loopback and returns its port.
func newSTUN(t testing.TB) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := stunserver.New(ctx)
	if err := s.Listen("127.0.0.1:0"); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s.LocalAddr().(*net.UDPAddr).Port
}
