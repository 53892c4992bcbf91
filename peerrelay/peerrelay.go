// Package peerrelay is the server's UDP relay: Tailscale's peer relay
// (tailscale.com/net/udprelay) run as a peer of its own, for the agents and
// clients whose paths cannot go direct but can reach the server over UDP
// (hard NATs, cloud NAT gateways, CGNAT). Over it they move data at nearly
// direct speed, where DERP, a TCP stream that carries every packet as its
// own TLS record, moves a fraction of that. DERP stays the path of last
// resort, for networks that block UDP.
//
// # How a path moves to the relay
//
// The relay is a tunnel.Conn that the coordinator introduces to every agent
// and client of the deployment, and they to it (coordinator, relays.go).
// When two peers have no direct path, magicsock on each side asks the
// relay, over DERP, to allocate an endpoint for their pair of disco keys;
// the relay answers with a VNI and its UDP addresses; both bind it, and
// their WireGuard packets (end-to-end encrypted, Geneve-framed with the
// VNI) go to the relay's UDP port, which forwards them to the other. A
// direct path that works is never displaced; DERP carries the first
// packets meanwhile.
//
// # What the relay may do
//
// Nothing but forward. Its peers hold it as a relay (tunnel.UpsertRelay):
// no WireGuard session with it, no packet from it accepted, no connection
// to it. It sees ciphertext only. It allocates endpoints only for a pair
// the coordinator allows to talk (an agent and a client bound to it, see
// allowed), so a user's client cannot use it to reach an agent it was not
// introduced to. And its own WireGuard side accepts nothing: it has no
// ordinary peers.
//
// It knows nothing of the API or the store: it reaches the coordinator
// through Options.Serve, as the server's other tunnels do.
package peerrelay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"tailscale.com/net/netmon"
	"tailscale.com/net/udprelay"
	"tailscale.com/net/udprelay/endpoint"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/views"
	"tailscale.com/util/usermetric"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/mailbox"
	"github.com/tetherdev/tether/tunnel"
)

// DefaultPort is the relay's UDP port unless told otherwise; operators open
// it to the world, as they do STUN's 3478.
const DefaultPort = 3479

// Stream is the relay's coordination stream, as the coordinator serves it
// (coordinator.Stream).
type Stream interface {
	Recv(ctx context.Context) (*tether.CoordinateRequest, error)
	Send(ctx context.Context, resp *tether.CoordinateResponse) error
}

// Options configure a Relay.
type Options struct {
	// Logger receives the relay's logs. Nil discards them.
	Logger *slog.Logger
	// Port is the UDP port to bind on every interface; 0 picks a free one.
	Port uint16
	// Host, if valid and specified, is the one address (with the bound
	// port) the relay gives its clients; otherwise it gives the addresses
	// of this machine's interfaces. Either way it binds Port on every
	// interface.
	Host netip.Addr
	// Addrs, if set, are the addresses (with the port peers must send to)
	// the relay gives its clients instead, where its public address is not
	// on an interface (a cloud VM, a load balancer).
	Addrs []netip.AddrPort
	// DERPMap is the deployment's: the relay's own node talks to its
	// clients over DERP. Required.
	DERPMap       *tailcfg.DERPMap
	DERPPlainHTTP bool // see tunnel.Options
	// DERPForceWebSockets: see tunnel.Options.
	DERPForceWebSockets bool
	// Serve serves the relay's coordination stream until it ends or ctx is
	// done (the coordinator's ServeRelay). Required.
	Serve func(ctx context.Context, id uuid.UUID, s Stream) error
}

// Relay is a running UDP relay.
type Relay struct {
	logger *slog.Logger
	id     uuid.UUID
	srv    *udprelay.Server
	conn   *tunnel.Conn
	addrs  []netip.AddrPort
	serve  func(ctx context.Context, id uuid.UUID, s Stream) error

	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	peers map[uuid.UUID]peerInfo // guarded by mu
	// clients are the clients bound to each agent, by agent ID. Guarded
	// by mu.
	clients map[uuid.UUID]map[uuid.UUID]struct{}
}

// peerInfo is what the relay knows of an agent or client.
type peerInfo struct {
	disco key.DiscoPublic
	agent uuid.UUID // the agent it belongs to: itself for an agent
}

// retryInterval is the wait before the relay reconnects its coordination
// stream (in process, so it breaks only when the coordinator closes).
const retryInterval = time.Second

// Start starts the relay: its UDP server, its node, and its coordination.
func Start(ctx context.Context, opts Options) (_ *Relay, err error) {
	if opts.DERPMap == nil || opts.Serve == nil {
		return nil, errors.New("peerrelay: DERPMap and Serve are required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		logger:  logger,
		id:      uuid.New(),
		serve:   opts.Serve,
		done:    make(chan struct{}),
		peers:   make(map[uuid.UUID]peerInfo),
		clients: make(map[uuid.UUID]map[uuid.UUID]struct{}),
	}
	port := opts.Port
	if port == 0 {
		// The library's server does not say which port it bound.
		if port, err = freeUDPPort(); err != nil {
			return nil, err
		}
	}
	libLogger := logger.With(slog.String("component", "udprelay"))
	logf := func(format string, args ...any) {
		libLogger.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
	var metrics usermetric.Registry
	// Only the addresses we give it: its own discovery asks STUN servers
	// and cloud metadata services, which we neither need nor want.
	if r.srv, err = udprelay.NewServer(logf, port, true, &metrics, nil); err != nil {
		return nil, fmt.Errorf("start UDP relay on port %d: %w", port, err)
	}
	defer func() {
		if err != nil {
			r.srv.Close()
		}
	}()
	switch {
	case len(opts.Addrs) > 0:
		r.addrs = slices.Clone(opts.Addrs)
	case opts.Host.IsValid() && !opts.Host.IsUnspecified():
		r.addrs = []netip.AddrPort{netip.AddrPortFrom(opts.Host, port)}
	default:
		if r.addrs, err = interfaceAddrs(port); err != nil {
			return nil, err
		}
	}
	r.srv.SetStaticAddrPorts(views.SliceOf(r.addrs))

	r.conn, err = tunnel.New(ctx, tunnel.Options{
		Logger:              logger.With(slog.String("component", "tunnel")),
		ID:                  r.id,
		DERPMap:             opts.DERPMap,
		BlockEndpoints:      true, // it carries no WireGuard path of its own
		DisableUDPRelay:     true,
		DERPPlainHTTP:       opts.DERPPlainHTTP,
		DERPForceWebSockets: opts.DERPForceWebSockets,
		RelayAllocator:      r.allocate,
	})
	if err != nil {
		return nil, fmt.Errorf("start UDP relay's tunnel: %w", err)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	go r.run(rctx)
	logger.Info("UDP relay started", slog.Any("addresses", r.addrs))
	return r, nil
}

// Addrs returns the addresses the relay gives its clients.
func (r *Relay) Addrs() []netip.AddrPort { return slices.Clone(r.addrs) }

// Close stops the relay.
func (r *Relay) Close() error {
	r.cancel()
	<-r.done
	r.conn.Close()
	return r.srv.Close()
}

// run keeps the relay's coordination stream up until ctx ends.
func (r *Relay) run(ctx context.Context) {
	defer close(r.done)
	s := &stream{r: r}
	r.conn.SetNodeCallback(s.node.Put)
	for {
		s.sent = nil
		err := r.serve(ctx, r.id, s)
		r.forgetAll()
		if ctx.Err() != nil {
			return
		}
		r.logger.Warn("UDP relay's coordination ended; retrying", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryInterval):
		}
	}
}

// stream is the relay's end of its coordination: requests carry the
// relay's node, responses say which peers it may relay for.
type stream struct {
	r    *Relay
	node mailbox.Mailbox[*tether.Node]
	sent *tether.Node // the last node Recv returned; only Recv uses it
}

func (s *stream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	n, err := mailbox.Next(ctx, &s.node, s.sent)
	if err != nil {
		return nil, err
	}
	s.sent = n
	return &tether.CoordinateRequest{Node: n}, nil
}

// Send applies resp. The coordinator checked its nodes as they reached it.
func (s *stream) Send(ctx context.Context, resp *tether.CoordinateResponse) error {
	if resp.DERPMap != nil {
		s.r.conn.SetDERPMap(resp.DERPMap)
	}
	for _, u := range resp.Peers {
		switch {
		case u.Kind == tether.PeerNode && !u.Relay && u.Agent != uuid.Nil:
			s.r.upsert(u.ID, u.Agent, u.Node)
		case u.Kind == tether.PeerDisconnected || u.Kind == tether.PeerLost:
			// A lost peer that comes back is introduced again; until
			// then no new endpoint is allocated for it (those in use go
			// on until they expire).
			s.r.forget(u.ID)
		}
	}
	return nil
}

// upsert records the peer id, which belongs to agent, and lets its tunnel
// ask us for endpoints.
func (r *Relay) upsert(id, agent uuid.UUID, n *tether.Node) {
	if err := r.conn.UpsertRelayClient(id, n); err != nil {
		r.logger.Warn("cannot add relay client", slog.String("peer", id.String()), slog.Any("err", err))
		return
	}
	r.record(id, agent, n.DiscoKey)
}

// record notes that peer id, which belongs to agent, holds disco.
func (r *Relay) record(id, agent uuid.UUID, disco key.DiscoPublic) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forgetLocked(id)
	r.peers[id] = peerInfo{disco: disco, agent: agent}
	if agent != id {
		if r.clients[agent] == nil {
			r.clients[agent] = make(map[uuid.UUID]struct{})
		}
		r.clients[agent][id] = struct{}{}
	}
}

func (r *Relay) forget(id uuid.UUID) {
	r.mu.Lock()
	ok := r.forgetLocked(id)
	r.mu.Unlock()
	if ok {
		r.conn.RemovePeer(id)
	}
}

// forgetLocked removes id from the relay's records and reports whether it
// was there. r.mu must be held.
func (r *Relay) forgetLocked(id uuid.UUID) bool {
	old, ok := r.peers[id]
	if !ok {
		return false
	}
	delete(r.peers, id)
	if cs := r.clients[old.agent]; old.agent != id && cs != nil {
		delete(cs, id)
		if len(cs) == 0 {
			delete(r.clients, old.agent)
		}
	}
	return true
}

func (r *Relay) forgetAll() {
	r.mu.Lock()
	ids := make([]uuid.UUID, 0, len(r.peers))
	for id := range r.peers {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.forget(id)
	}
}

// Errors of allocate, for the logs.
var (
	errUnknownPeer = errors.New("a peer of the pair is unknown")
	errNotAPair    = errors.New("the pair is not an agent and a client bound to it")
	errNotInPair   = errors.New("the requester is not one of the pair")
)

// allocate is the tunnel's RelayAllocator: an endpoint for the pair if
// the coordinator lets them talk.
func (r *Relay) allocate(from uuid.UUID, pair [2]key.DiscoPublic) (endpoint.ServerEndpoint, error) {
	if err := r.allowed(from, pair); err != nil {
		return endpoint.ServerEndpoint{}, err
	}
	return r.srv.AllocateEndpoint(pair[0], pair[1])
}

// allowed reports (nil) whether from may ask for an endpoint for pair:
// from is a peer the coordinator introduced to us, its disco key is one of
// the pair, and the other is the disco key of its counterpart: its agent,
// for a client; a client bound to it, for an agent. (Clients never talk
// to clients, nor agents to agents.)
//
// Everything is looked up from the requester, never from the disco keys of
// the pair: a node may claim any disco key (it cannot speak for a key it
// does not hold, but it can claim one), and a lookup by disco key would let
// a forged claim displace the real holder and refuse its pairs.
func (r *Relay) allowed(from uuid.UUID, pair [2]key.DiscoPublic) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[from]
	if !ok {
		return errUnknownPeer
	}
	var other key.DiscoPublic
	switch p.disco {
	case pair[0]:
		other = pair[1]
	case pair[1]:
		other = pair[0]
	default:
		return errNotInPair
	}
	if p.agent != from { // a client
		a, ok := r.peers[p.agent]
		switch {
		case !ok:
			return errUnknownPeer
		case a.disco != other:
			return errNotAPair
		}
		return nil
	}
	for id := range r.clients[from] {
		if r.peers[id].disco == other {
			return nil
		}
	}
	return errNotAPair
}

// freeUDPPort returns a UDP port free on every interface right now.
func freeUDPPort() (uint16, error) {
	pc, err := net.ListenPacket("udp4", ":0")
	if err != nil {
		return 0, fmt.Errorf("find a free UDP port: %w", err)
	}
	defer pc.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port), nil
}

// interfaceAddrs returns this machine's addresses with port: the
// interfaces' own, or loopback when there are none.
func interfaceAddrs(port uint16) ([]netip.AddrPort, error) {
	regular, loopback, err := netmon.LocalAddresses()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	ips := regular
	if len(ips) == 0 {
		ips = loopback
	}
	var out []netip.AddrPort
	for _, ip := range ips {
		if ip.IsValid() && !ip.IsLinkLocalUnicast() {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), port))
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no interface address to give the UDP relay's clients: set its public addresses")
	}
	return out, nil
}
