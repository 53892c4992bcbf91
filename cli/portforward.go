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
	"time"

	"github.com/spf13/cobra"
)

// portSpec is one --tcp or --udp mapping: a local listen address and a
// workspace port.
type portSpec struct {
	network string // "tcp" or "udp"
	local   string // host:port to listen on
	remote  uint16
}

// parsePortSpec reads "L:R", "R" (the same port locally) or "ADDR:L:R".
func parsePortSpec(network, s string) (portSpec, error) {
	parts := strings.Split(s, ":")
	host := "127.0.0.1"
	var l, r string
	switch len(parts) {
	case 1:
		l, r = parts[0], parts[0]
	case 2:
		l, r = parts[0], parts[1]
	case 3:
		host, l, r = parts[0], parts[1], parts[2]
	default:
		return portSpec{}, fmt.Errorf("--%s %q: want LOCAL:REMOTE ports, e.g. 8080:80", network, s)
	}
	lp, err1 := strconv.ParseUint(l, 10, 16)
	rp, err2 := strconv.ParseUint(r, 10, 16)
	if err1 != nil || err2 != nil || rp == 0 {
		return portSpec{}, fmt.Errorf("--%s %q: ports must be numbers from 1 to 65535", network, s)
	}
	return portSpec{network: network, local: net.JoinHostPort(host, strconv.Itoa(int(lp))), remote: uint16(rp)}, nil
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
			"Listens on 127.0.0.1 unless the mapping names an address (ADDR:LOCAL:REMOTE).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var specs []portSpec
			for _, s := range tcp {
				p, err := parsePortSpec("tcp", s)
				if err != nil {
					return err
				}
				specs = append(specs, p)
			}
			for _, s := range udp {
				p, err := parsePortSpec("udp", s)
				if err != nil {
					return err
				}
				specs = append(specs, p)
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
				if s.network == "tcp" {
					b.ln, err = net.Listen("tcp", s.local)
					closers = append(closers, b.ln)
				} else {
					b.pc, err = net.ListenPacket("udp", s.local)
					closers = append(closers, b.pc)
				}
				if err != nil {
					return fmt.Errorf("listen on %s: %w", s.local, err)
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
	cmd.Flags().StringArrayVar(&tcp, "tcp", nil, "forward a TCP port: LOCAL:REMOTE (repeatable)")
	cmd.Flags().StringArrayVar(&udp, "udp", nil, "forward a UDP port: LOCAL:REMOTE (repeatable)")
	return cmd
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
			defer c.Close()
			// When the command ends, so do its connections, even idle ones
			// (a copy would wait for the local side to speak).
			defer context.AfterFunc(ctx, func() { c.Close() })()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			remote, err := t.dial(dctx, port)
			cancel()
			if err != nil {
				logger.Warn("forward: cannot reach the workspace port", slog.Int("port", int(port)), slog.Any("err", err))
				return
			}
			defer remote.Close()
			join.Conns(c, remote)
		}()
	}
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
