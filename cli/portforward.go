package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/tetherdev/tether/internal/join"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// portSpec is one forwarded port: a local listen address and a
// workspace port.
type portSpec struct {
	network string // "tcp" or "udp"
	local   string // host:port to listen on
	remote  uint16
}

// maxPortRange bounds how many ports one mapping forwards, against a typo
// such as 8000-80000.
const maxPortRange = 1000

// parsePortSpecs reads a --tcp or --udp value: comma-separated mappings,
// each "LOCAL:REMOTE", "PORT" (the same port locally), or
// "ADDR:LOCAL:REMOTE" with an IPv6 ADDR in brackets ("[::1]:8080:80");
// LOCAL and REMOTE may be ranges of the same length ("8000-8002:9000-9002").
func parsePortSpecs(network, value string) ([]portSpec, error) {
	var out []portSpec
	for _, s := range strings.Split(value, ",") {
		specs, err := parsePortSpec(network, strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--%s %q: %w", network, s, err)
		}
		out = append(out, specs...)
	}
	return out, nil
}

func parsePortSpec(network, s string) ([]portSpec, error) {
	host := "127.0.0.1"
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]:")
		if end < 0 {
			return nil, errors.New("an IPv6 address goes in brackets before the ports, e.g. [::1]:8080:80")
		}
		host, s = s[1:end], s[end+2:]
		if strings.Count(s, ":") > 1 {
			return nil, errors.New("want [ADDR]:LOCAL:REMOTE")
		}
	}
	parts := strings.Split(s, ":")
	var l, r string
	switch len(parts) {
	case 1:
		l, r = parts[0], parts[0]
	case 2:
		l, r = parts[0], parts[1]
	case 3:
		if host != "127.0.0.1" {
			return nil, errors.New("want [ADDR]:LOCAL:REMOTE")
		}
		host, l, r = parts[0], parts[1], parts[2]
	default:
		return nil, errors.New("want LOCAL:REMOTE ports, e.g. 8080:80, or put an IPv6 address in brackets: [::1]:8080:80")
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return nil, fmt.Errorf("%q is not an IP address to listen on", host)
		}
	}
	lFirst, lLast, err := parsePortRange(l)
	if err != nil {
		return nil, err
	}
	rFirst, rLast, err := parsePortRange(r)
	if err != nil {
		return nil, err
	}
	if rFirst == 0 {
		return nil, errors.New("the workspace port must be from 1 to 65535")
	}
	if lLast-lFirst != rLast-rFirst {
		return nil, fmt.Errorf("the ranges %s and %s differ in length", l, r)
	}
	if n := rLast - rFirst + 1; n > maxPortRange {
		return nil, fmt.Errorf("%d ports is more than %d in one mapping", n, maxPortRange)
	}
	var out []portSpec
	for i := 0; i <= rLast-rFirst; i++ {
		lp := 0 // a port of the system's choosing
		if lFirst != 0 {
			lp = lFirst + i
		}
		out = append(out, portSpec{network: network, local: net.JoinHostPort(host, strconv.Itoa(lp)), remote: uint16(rFirst + i)})
	}
	return out, nil
}

// parsePortRange reads "PORT" or "FIRST-LAST".
func parsePortRange(s string) (first, last int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	f, err1 := strconv.ParseUint(a, 10, 16)
	l := f
	var err2 error
	if isRange {
		l, err2 = strconv.ParseUint(b, 10, 16)
	}
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: ports are numbers from 1 to 65535, or ranges such as 8000-8002", s)
	}
	if l < f {
		return 0, 0, fmt.Errorf("the range %s ends before it starts", s)
	}
	if isRange && f == 0 {
		return 0, 0, fmt.Errorf("the range %s starts at port 0", s)
	}
	return int(f), int(l), nil
}

func (r *root) portForwardCommand() *cobra.Command {
	var (
		tf       tunnelFlags
		tcp, udp []string
	)
	cmd := &cobra.Command{
		Use:   "port-forward WORKSPACE --tcp LOCAL:REMOTE [--udp LOCAL:REMOTE]...",
		Short: "Forward local ports to ports in a workspace",
		Long: "Forward local TCP and UDP ports to ports on the workspace's loopback, over the tunnel.\n" +
			"Listens on 127.0.0.1 unless the mapping names an address (ADDR:LOCAL:REMOTE, with an IPv6\n" +
			"address in brackets: [::1]:8080:80). Ports may be ranges of the same length\n" +
			"(8000-8002:9000-9002), and one flag may carry several mappings separated by commas.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []portSpec
			for _, s := range tcp {
				p, err := parsePortSpecs("tcp", s)
				if err != nil {
					return err
				}
				specs = append(specs, p...)
			}
			for _, s := range udp {
				p, err := parsePortSpecs("udp", s)
				if err != nil {
					return err
				}
				specs = append(specs, p...)
			}
			if len(specs) == 0 {
				return errors.New("nothing to forward: pass --tcp LOCAL:REMOTE or --udp LOCAL:REMOTE")
			}
			ctx := cmd.Context()
			// Listen first, so that a port already in use fails at once.
			var closers []io.Closer
			defer func() {
				for _, c := range closers {
					c.Close()
				}
			}()
			type bound struct {
				spec portSpec
				ln   net.Listener
				pc   net.PacketConn
			}
			var all []bound
			for _, s := range specs {
				b := bound{spec: s}
				var err error
				// Only a listener that exists goes on closers: a nil one
				// in an interface would panic when closed.
				if s.network == "tcp" {
					if b.ln, err = net.Listen("tcp", s.local); err == nil {
						closers = append(closers, b.ln)
					}
				} else {
					if b.pc, err = net.ListenPacket("udp", s.local); err == nil {
						closers = append(closers, b.pc)
					}
				}
				if err != nil {
					return listenError(s, err)
				}
				all = append(all, b)
			}
			t, err := r.dialWorkspace(ctx, args[0], tf)
			if err != nil {
				return err
			}
			defer t.stop()
			logger, _ := newLogger(r.env.Stderr, "info")
			var wg sync.WaitGroup
			for _, b := range all {
				wg.Add(1)
				if b.ln != nil {
					fmt.Fprintf(r.env.Stdout, "Forwarding tcp %s -> %s:%d\n", b.ln.Addr(), t.workspace.Name, b.spec.remote)
					go func() { defer wg.Done(); r.serveTCPForward(ctx, t, b.ln, b.spec.remote, logger) }()
				} else {
					fmt.Fprintf(r.env.Stdout, "Forwarding udp %s -> %s:%d\n", b.pc.LocalAddr(), t.workspace.Name, b.spec.remote)
					go func() { defer wg.Done(); r.serveUDPForward(ctx, t, b.pc, b.spec.remote, logger) }()
				}
			}
			fmt.Fprintln(r.env.Stdout, "Press Ctrl+C to stop.")
			// The tunnel ends the connections of an agent that is gone;
			// their local ends see them close. Say why, and keep
			// listening: new connections reach the agent once it is back.
			for done := false; !done; {
				select {
				case <-ctx.Done():
					done = true
				case err := <-t.notices:
					logger.Warn(err.Error() + "; its forwarded connections were closed")
				}
			}
			for _, c := range closers {
				c.Close()
			}
			wg.Wait()
			return nil
		},
	}
	tf.register(cmd)
	cmd.Flags().StringArrayVar(&tcp, "tcp", nil, "forward TCP: LOCAL:REMOTE, [ADDR:]LOCAL:REMOTE or FIRST-LAST:FIRST-LAST (repeatable)")
	cmd.Flags().StringArrayVar(&udp, "udp", nil, "forward UDP, as --tcp (repeatable)")
	return cmd
}

// listenError says in one line why a local port cannot be forwarded.
func listenError(s portSpec, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot forward %s %s: the port is in use (pick another LOCAL port, as in --%s OTHER:%d)", s.network, s.local, s.network, s.remote)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("cannot forward %s %s: this machine has no such address", s.network, s.local)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot forward %s %s: permission denied (ports below 1024 need privileges)", s.network, s.local)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return fmt.Errorf("cannot forward %s %s: %v", s.network, s.local, err)
}

func (r *root) serveTCPForward(ctx context.Context, t *workspaceTunnel, ln net.Listener, port uint16, logger *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			forwardTCP(ctx, c, func(ctx context.Context) (net.Conn, error) { return t.dial(ctx, port) }, func(err error) {
				logger.Warn(fmt.Sprintf("forward to %s port %d: %v", t.workspace.Name, port, err))
			})
		}()
	}
}

// errNoAnswer is why a forwarded connection ended when the workspace
// closed it without a byte: the agent accepts each tunnel connection and
// then dials the port, and closes it when nothing listens there.
var errNoAnswer = errors.New("the workspace closed the connection without answering: is anything listening on that port in the workspace?")

// forwardTCP joins local to a connection that dial opens to the workspace
// port, and reports why the forward failed, if it did: the tunnel could
// not reach the agent, or the port closed it without a byte (refused).
func forwardTCP(ctx context.Context, local net.Conn, dial func(context.Context) (net.Conn, error), report func(error)) {
	defer local.Close()
	// When the command ends, so do its connections, even idle ones (a
	// copy would wait for the local side to speak).
	defer context.AfterFunc(ctx, func() { local.Close() })()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	remote, err := dial(dctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			report(fmt.Errorf("cannot reach the workspace: %w", err))
		}
		return
	}
	defer remote.Close()
	rc := &countingConn{Conn: remote}
	join.Conns(local, rc)
	if rc.n.Load() == 0 && rc.closedFirst.Load() && ctx.Err() == nil {
		report(errNoAnswer)
	}
}

// countingConn counts the bytes read from a connection, and tells whether
// the peer closed it while we were still sending: a server that closes
// after our request ended is answering, if with nothing.
type countingConn struct {
	net.Conn
	n           atomic.Int64
	doneSending atomic.Bool
	closedFirst atomic.Bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	// EOF, or a reset when it closed with our request unread (over the
	// tunnel, a reset is an error of netstack's own, not ECONNRESET).
	if err != nil && !errors.Is(err, net.ErrClosed) && !c.doneSending.Load() {
		c.closedFirst.Store(true)
	}
	return n, err
}

// CloseWrite half-closes the connection, as join.Conns does for the
// connections that support it.
func (c *countingConn) CloseWrite() error {
	c.doneSending.Store(true)
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// udpFlowIdle ends a forwarded UDP flow that has been quiet this long.
const udpFlowIdle = 2 * time.Minute

// serveUDPForward relays datagrams from each local sender over its own
// tunnel flow to the workspace port, and the replies back to that sender.
func (r *root) serveUDPForward(ctx context.Context, t *workspaceTunnel, pc net.PacketConn, port uint16, logger *slog.Logger) {
	var (
		mu    sync.Mutex
		flows = map[netip.AddrPort]net.Conn{}
		wg    sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		src := addr.(*net.UDPAddr).AddrPort()
		mu.Lock()
		flow := flows[src]
		mu.Unlock()
		if flow == nil {
			flow, err = t.conn.DialContext(ctx, "udp", netip.AddrPortFrom(t.agentIP, port))
			if err != nil {
				logger.Warn("forward: cannot reach the workspace port", slog.Int("port", int(port)), slog.Any("err", err))
				continue
			}
			mu.Lock()
			flows[src] = flow
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				reply := make([]byte, 64<<10)
				for {
					flow.SetReadDeadline(time.Now().Add(udpFlowIdle))
					n, err := flow.Read(reply)
					if err != nil {
						break
					}
					pc.WriteTo(reply[:n], net.UDPAddrFromAddrPort(src))
				}
				mu.Lock()
				delete(flows, src)
				mu.Unlock()
				flow.Close()
			}()
		}
		flow.Write(buf[:n])
	}
}
