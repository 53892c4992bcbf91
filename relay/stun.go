package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"tailscale.com/net/stunserver"
)

// STUN is the STUN servers of a relay's region: peers ask them which
// address and port their packets come from, the candidates for direct
// paths. The DERP map names one port for the whole region (the first
// server's), so every address should listen on the same port unless the
// first is the only one peers use.
type STUN struct {
	servers []*stunserver.STUNServer
	port    int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// ListenSTUN starts a STUN server on each UDP address (host:port; port 0
// picks a free one) and serves until Close. It fails, having started
// nothing, if any address cannot be listened on.
func ListenSTUN(addrs []string, logger *slog.Logger) (*STUN, error) {
	if len(addrs) == 0 {
		return nil, errors.New("relay: no STUN address to listen on")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The library's servers stop when their context ends.
	ctx, cancel := context.WithCancel(context.Background())
	s := &STUN{cancel: cancel}
	for _, addr := range addrs {
		srv := stunserver.New(ctx)
		if err := srv.Listen(addr); err != nil {
			s.Close()
			return nil, fmt.Errorf("STUN server on %s: %w", addr, err)
		}
		s.servers = append(s.servers, srv)
		if s.port == 0 {
			s.port = srv.LocalAddr().(*net.UDPAddr).Port
		}
		s.wg.Go(func() {
			if err := srv.Serve(); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				logger.Error("STUN server stopped", slog.Any("err", err))
			}
		})
		// The library says "STUN server listening on ADDR" itself,
		// through the global log that the command sends to its logger.
	}
	return s, nil
}

// Port is the port peers should ask: that of the first address.
func (s *STUN) Port() int { return s.port }

// Addrs are the addresses the servers listen on, in the order given.
func (s *STUN) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.servers))
	for i, srv := range s.servers {
		out[i] = srv.LocalAddr()
	}
	return out
}

// Close stops the servers and waits for them.
func (s *STUN) Close() {
	s.cancel()
	s.wg.Wait()
}
