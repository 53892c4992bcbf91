// Package agentnet gives the server tunnels of its own to workspace agents,
// for what it relays on behalf of browsers: the web terminal and web apps.
//
// The server is a coordination client like any CLI, but in-process: each
// agent it talks to gets its own tunnel peer (a tunnel.Conn with a fresh ID),
// introduced through the server's coordinator over an in-memory stream.
// What the coordinator says of the agent is applied by the same rules as
// for a CLI (coordclient.Peers): a lost agent stays in the tunnel until it
// is reintroduced or coordclient.DefaultLostPeerTimeout passes, and the
// tunnel ends its connections if it stops answering meanwhile. Peers are
// opened on demand and closed once idle, so a server that serves no
// browser holds no tunnels.
package agentnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

// Options configure a Net.
type Options struct {
	Logger *slog.Logger
	// Coordinator introduces the server's peers to agents, in process.
	// Either it or Dial is required.
	Coordinator *coordinator.Coordinator
	// Dial opens a coordination WebSocket for the peer clientID to the
	// agent agentID on a coordinator in another process: a workspace
	// proxy's tunnels are coordinated by the primary. Its errors are
	// handled as coordclient.Options.Dial's.
	Dial func(ctx context.Context, clientID, agentID uuid.UUID) (*websocket.Conn, error)
	// DERPMap is the relay map the server's peers start with. Required.
	DERPMap *tailcfg.DERPMap
	// BlockEndpoints keeps the server's peers relay-only.
	BlockEndpoints bool
	// DERPPlainHTTP reaches relays over plain HTTP (http:// access URLs).
	DERPPlainHTTP bool
	// DERPForceWebSockets reaches relays over WebSocket only.
	DERPForceWebSockets bool
	// IdleTimeout closes a peer that has carried no connection this long.
	// Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is how long an unused tunnel to an agent stays open.
const DefaultIdleTimeout = 5 * time.Minute

// Net is the server's set of tunnels to agents. Its methods are safe for
// concurrent use.
type Net struct {
	opts   Options
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[uuid.UUID]*peer // by agent ID
}

// peer is the server's tunnel to one agent.
type peer struct {
	agentID uuid.UUID
	ready   chan struct{} // closed when conn is set or err
	conn    *tunnel.Conn
	err     error
	cancel  context.CancelFunc
	done    chan struct{} // closed when its coordination ends

	active   atomic.Int64 // callers using it: counted by acquire under Net.mu, uncounted by release
	lastUsed atomic.Int64 // unix nanoseconds

	presence *presence // whether the coordinator introduces the agent
}

// New returns a Net. Close it to release every tunnel.
func New(opts Options) (*Net, error) {
	if (opts.Coordinator == nil) == (opts.Dial == nil) || opts.DERPMap == nil {
		return nil, errors.New("agentnet: DERPMap, and one of Coordinator and Dial, are required")
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Net{opts: opts, logger: logger, ctx: ctx, cancel: cancel, peers: map[uuid.UUID]*peer{}}
	n.wg.Add(1)
	go n.reapIdle()
	return n, nil
}

// Close closes every tunnel and waits for their goroutines.
func (n *Net) Close() {
	n.cancel()
	n.mu.Lock()
	peers := n.peers
	n.peers = map[uuid.UUID]*peer{}
	n.mu.Unlock()
	for _, p := range peers {
		n.closePeer(p)
	}
	n.wg.Wait()
}

// acquire returns the open tunnel to agentID, opening one if needed, and
// counts the caller as using it until it calls release. The count is taken
// under n.mu, where the idle reaper looks, so that the reaper never closes
// a tunnel that a caller has been handed, nor one still being opened for
// it (which may take longer than IdleTimeout).
func (n *Net) acquire(ctx context.Context, agentID uuid.UUID) (*peer, error) {
	n.mu.Lock()
	if n.ctx.Err() != nil {
		n.mu.Unlock()
		return nil, errors.New("agentnet: closed")
	}
	p, ok := n.peers[agentID]
	if !ok {
		p = &peer{agentID: agentID, ready: make(chan struct{}), done: make(chan struct{}), presence: newPresence()}
		n.peers[agentID] = p
		n.wg.Add(1)
		go n.open(p)
	}
	p.active.Add(1)
	n.mu.Unlock()
	select {
	case <-p.ready:
	case <-ctx.Done():
		p.release()
		return nil, ctx.Err()
	}
	if p.err != nil {
		p.release()
		n.mu.Lock()
		if n.peers[agentID] == p {
			delete(n.peers, agentID)
		}
		n.mu.Unlock()
		return nil, p.err
	}
	return p, nil
}

// open starts p's tunnel and its coordination, and runs until p is closed.
func (n *Net) open(p *peer) {
	defer n.wg.Done()
	defer close(p.done)
	log := n.logger.With(slog.String("agent", p.agentID.String()))
	conn, err := tunnel.New(n.ctx, tunnel.Options{
		Logger:              log.With(slog.String("component", "tunnel")),
		ID:                  uuid.New(),
		DERPMap:             n.opts.DERPMap,
		BlockEndpoints:      n.opts.BlockEndpoints,
		DERPPlainHTTP:       n.opts.DERPPlainHTTP,
		DERPForceWebSockets: n.opts.DERPForceWebSockets,
	})
	if err != nil {
		p.err = fmt.Errorf("start tunnel: %w", err)
		close(p.ready)
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	p.conn, p.cancel = conn, cancel
	close(p.ready)

	tun := agentTunnel{Conn: conn, agentID: p.agentID, presence: p.presence}
	conn.SetPeerGoneCallback(func(id uuid.UUID, why error) {
		if id == p.agentID {
			p.presence.peerGone(why)
		}
	})
	if n.opts.Dial != nil {
		err = n.coordinateRemote(ctx, conn, tun, p.agentID, log)
	} else {
		peers := coordclient.NewPeers(coordclient.PeersOptions{
			Tunnel: tun,
			Logger: log.With(slog.String("component", "coordination")),
		})
		stream := &localStream{peers: peers}
		conn.SetNodeCallback(stream.setNode)
		err = n.opts.Coordinator.ServeClient(ctx, conn.ID(), p.agentID, stream)
		peers.Close()
	}
	if err != nil && ctx.Err() == nil {
		log.Warn("server tunnel coordination ended", slog.Any("err", err))
	}
	// A tunnel whose coordination ended for good (the coordinator refused
	// or revoked it) is of no more use: it leaves the map before it
	// closes, so that a caller its closing fails finds it gone and opens
	// another.
	n.mu.Lock()
	if n.peers[p.agentID] == p {
		delete(n.peers, p.agentID)
	}
	n.mu.Unlock()
	p.presence.leave(ErrTunnelClosed)
	conn.Close()
}

// coordinateRemote runs the tunnel's coordination over a WebSocket to
// another process's coordinator, as a CLI's runs, until ctx ends or the
// coordinator refuses the tunnel for good.
func (n *Net) coordinateRemote(ctx context.Context, conn *tunnel.Conn, tun agentTunnel, agentID uuid.UUID, log *slog.Logger) error {
	client := coordclient.New(coordclient.Options{
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			return n.opts.Dial(ctx, conn.ID(), agentID)
		},
		Tunnel: tun,
		Logger: log.With(slog.String("component", "coordination")),
	})
	conn.SetNodeCallback(client.SetNode)
	return client.Run(ctx)
}

// closePeer ends p's coordination and tunnel and waits for them.
func (n *Net) closePeer(p *peer) {
	<-p.ready
	if p.cancel != nil {
		p.cancel()
	}
	<-p.done
}

// reapIdle closes tunnels that have carried nothing for IdleTimeout.
func (n *Net) reapIdle() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.IdleTimeout / 4)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-n.opts.IdleTimeout).UnixNano()
		var idle []*peer
		n.mu.Lock()
		for id, p := range n.peers {
			if p.active.Load() == 0 && p.lastUsed.Load() < cutoff {
				idle = append(idle, p)
				delete(n.peers, id)
			}
		}
		n.mu.Unlock()
		for _, p := range idle {
			n.logger.Debug("closing idle tunnel", slog.String("agent", p.agentID.String()))
			n.closePeer(p)
		}
	}
}

// Dial opens a TCP connection to port on the agent of workspace agentID,
// over the server's tunnel to it, waiting (until ctx ends) for the agent to
// be reachable.
func (n *Net) Dial(ctx context.Context, agentID uuid.UUID, port uint16) (net.Conn, error) {
	p, err := n.acquire(ctx, agentID)
	if err != nil {
		return nil, err
	}
	c, err := p.conn.DialContext(ctx, "tcp", netip.AddrPortFrom(tether.TunnelIP(agentID), port))
	if err != nil {
		p.release()
		return nil, err
	}
	return &trackedConn{Conn: c, p: p}, nil
}

// WatchAgent returns a channel that is closed when the agent of workspace
// agentID leaves: its coordination connection breaks, it disconnects, or
// it restarts. It is closed already if the agent is away, or if the server
// has no tunnel to it (Dial opens one). why says why it left, once left is
// closed. Connections through the tunnel end by themselves when the agent
// is gone for good; this tells at once.
func (n *Net) WatchAgent(agentID uuid.UUID) (left <-chan struct{}, why func() error) {
	n.mu.Lock()
	p := n.peers[agentID]
	n.mu.Unlock()
	if p == nil {
		closed := make(chan struct{})
		close(closed)
		return closed, func() error { return ErrAgentLost }
	}
	return p.presence.watch()
}

// Ping pings the agent over the server's tunnel, opening it if needed.
func (n *Net) Ping(ctx context.Context, agentID uuid.UUID) (tunnel.PingResult, error) {
	p, err := n.acquire(ctx, agentID)
	if err != nil {
		return tunnel.PingResult{}, err
	}
	defer p.release()
	ip := tether.TunnelIP(agentID)
	if err := p.conn.AwaitReachable(ctx, ip); err != nil {
		return tunnel.PingResult{}, err
	}
	return p.conn.Ping(ctx, ip)
}

// SetDERPMap gives every open and future tunnel a new relay map.
func (n *Net) SetDERPMap(m *tailcfg.DERPMap) {
	n.mu.Lock()
	n.opts.DERPMap = m
	peers := make([]*peer, 0, len(n.peers))
	for _, p := range n.peers {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	for _, p := range peers {
		select {
		case <-p.ready:
			if p.conn != nil {
				p.conn.SetDERPMap(m)
			}
		default:
		}
	}
}

// release ends a use that acquire counted.
func (p *peer) release() {
	p.lastUsed.Store(time.Now().UnixNano())
	p.active.Add(-1)
}

// trackedConn counts a connection as activity on its tunnel until closed.
type trackedConn struct {
	net.Conn
	p    *peer
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(c.p.release)
	return c.Conn.Close()
}

// CloseWrite half-closes when the tunnel's connection supports it.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
