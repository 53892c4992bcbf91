// Package tunnel is Tether's userspace WireGuard peer: the agent, the CLI and
// the server's web proxy each run one Conn to reach the peers the coordinator
// introduces to them.
//
// A Conn wraps tailscale.com's engine (wgengine + magicsock + netstack)
// without Tailscale's control plane and without root: no TUN device, no
// routes, no DNS. Its tunnel address is tether.TunnelIP(ID); TCP and UDP on
// that address live in an in-process network stack (netstack), reached with
// DialContext, Listen and ListenPacket.
//
// The coordinator's job is split in two callbacks:
//
//   - SetNodeCallback reports our own node (keys, home DERP region,
//     endpoints) whenever it changes; the caller sends it to the coordinator.
//   - UpsertPeer and RemovePeer take the nodes the coordinator sends back.
//
// The set of upserted peers is the authorization: WireGuard accepts
// handshakes only from their keys, and the packet filter accepts new inbound
// flows only from their tunnel addresses to ours.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"tailscale.com/envknob"
	"tailscale.com/health"
	"tailscale.com/net/dns"
	"tailscale.com/net/tsdial"
	"tailscale.com/net/tstun"
	"tailscale.com/proxymap"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
	"tailscale.com/types/netmap"
	"tailscale.com/util/eventbus"
	"tailscale.com/util/usermetric"
	"tailscale.com/wgengine"
	"tailscale.com/wgengine/filter"
	"tailscale.com/wgengine/magicsock"
	"tailscale.com/wgengine/netstack"
	"tailscale.com/wgengine/router"
	"tailscale.com/wgengine/wgcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/derpws"
	"github.com/tetherdev/tether/internal/mailbox"
)

// ErrUnknownPeer is returned for an address that belongs to no upserted peer.
var ErrUnknownPeer = errors.New("no such peer")

// derpHTTPKnob is the library's process-wide switch to plain-HTTP relays.
const derpHTTPKnob = "TS_DEBUG_USE_DERP_HTTP"

// errClosed is returned by a closed Conn.
var errClosed = fmt.Errorf("tunnel closed: %w", net.ErrClosed)

// Options configure a Conn.
type Options struct {
	// Logger receives the Conn's logs. Nil discards them. The library's own
	// (very chatty) logs are bridged at Debug.
	Logger *slog.Logger
	// ID identifies this peer; its tunnel address is tether.TunnelIP(ID).
	// Required.
	ID uuid.UUID
	// DERPMap lists the relays, and the STUN servers (the nodes' STUNPort;
	// -1 disables STUN for a node). Required. It may have no regions, in
	// which case only direct paths work.
	DERPMap *tailcfg.DERPMap
	// BlockEndpoints makes the Conn relay-only: it publishes no endpoints and
	// ignores the peers' endpoints, so no direct path is ever tried from
	// either side. (SetBlockEndpoints changes it later, with caveats.)
	BlockEndpoints bool
	// ListenPort is the UDP port for WireGuard and path discovery; 0 picks a
	// free one.
	ListenPort uint16
	// DERPPlainHTTP makes relays be reached over plain HTTP instead of
	// HTTPS, for development servers at http:// access URLs. The library
	// offers only a process-wide switch (TS_DEBUG_USE_DERP_HTTP), so this
	// affects every Conn in the process and stays on until the process
	// exits; set it on the first Conn a process starts. (Running the
	// process with TS_DEBUG_USE_DERP_HTTP=1 does the same.) A self-signed
	// HTTPS relay is better pinned with DERPNode.CertName =
	// "sha256-raw:<hex SHA-256 of the DER certificate>".
	DERPPlainHTTP bool
	// DERPForceWebSockets reaches every relay over WebSocket from the first
	// connection (ConnectionInfo.DERPForceWebSockets). Without it a relay
	// is reached over WebSocket only once a proxy is found to refuse DERP's
	// own upgrade (package derpws).
	DERPForceWebSockets bool
	// LostPeerGrace is how long a peer that the coordinator has lost
	// (SetPeerLost) may go without answering a ping before its
	// connections are ended. Zero means DefaultLostPeerGrace; negative
	// never ends them.
	LostPeerGrace time.Duration
	// DisableUDPRelay keeps our paths off UDP relays (relay.go): UpsertRelay
	// does nothing, and a path that cannot go direct goes through DERP.
	DisableUDPRelay bool
	// RelayAllocator makes this Conn a UDP relay's: peers added with
	// UpsertRelayClient may ask it for relay endpoints, which it
	// allocates. Nil for every other Conn.
	RelayAllocator RelayAllocator
	// Timeline, if set, hears the milestones of AwaitReachable (the peer
	// introduced, the first pong and its path, the WireGuard handshake
	// started and done), for a log of where a slow connect spent its
	// time. It must not block.
	Timeline func(event string, attrs ...any)
}

// Conn is one userspace WireGuard peer. Its methods are safe for concurrent
// use.
type Conn struct {
	logger *slog.Logger
	logf   logger.Logf
	id     uuid.UUID
	addr   netip.Addr
	prefix netip.Prefix // addr/128
	key    key.NodePrivate
	self   tailcfg.NodeView // our node as the engine and netstack see it

	bus       *eventbus.Bus
	busClient *eventbus.Client
	health    *health.Tracker
	metrics   usermetric.Registry
	proxyMap  proxymap.Mapper
	dialer    *tsdial.Dialer
	engine    wgengine.Engine
	magic     *magicsock.Conn // set by the engine through setSubsystem
	tundev    *tstun.Wrapper  // set by the engine through setSubsystem
	dns       *dns.Manager    // set by the engine through setSubsystem
	stack     *netstack.Impl
	relays    *derpws.Relays // how each relay is dialed: DERP or WebSocket

	timeline   func(event string, attrs ...any)                 // Options.Timeline; never nil
	noUDPRelay bool                                             // Options.DisableUDPRelay
	allocator  RelayAllocator                                   // Options.RelayAllocator
	allocResp  *eventbus.Publisher[magicsock.UDPRelayAllocResp] // with allocator

	// peers is an immutable snapshot, replaced on every change, because the
	// engine looks peers up on its packet paths.
	peers atomic.Pointer[peerTable]

	// peerMu serializes peer changes: magicsock requires UpsertPeer and
	// RemovePeer calls to be serialized, and the filter is rebuilt from the
	// table. Lock order: peerMu, then mu.
	peerMu     sync.Mutex
	nextNodeID tailcfg.NodeID               // guarded by peerMu
	filter     *filter.Filter               // guarded by peerMu
	removedAt  map[key.NodePublic]time.Time // guarded by peerMu; recently removed peers
	lost       map[uuid.UUID]*lostProbe     // guarded by peerMu; peers the coordinator lost, being pinged
	lostGrace  time.Duration                // see Options.LostPeerGrace

	closed    chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // the node loop
	// nodeDirty says our node may have changed. It carries no value: the
	// node loop builds the node from the fields below once changes settle.
	nodeDirty mailbox.Mailbox[struct{}]

	mu             sync.Mutex
	isClosed       bool
	derpMap        *tailcfg.DERPMap
	blockEndpoints bool
	homeDERP       int
	derpLatency    map[string]float64
	magicEndpoints []netip.AddrPort // what magicsock found (STUN, interfaces)
	localEndpoints []netip.AddrPort // our interfaces and UDP ports, known at once
	port4, port6   uint16
	bound4         bool // magicsock has bound its IPv4 socket once
	renewPeers     bool // magicsock rebound its sockets: see renewRelayedPeers
	nodeCB         func(*tether.Node)
	goneCB         func(uuid.UUID, error) // see SetPeerGoneCallback
	sentNode       *tether.Node           // last node given to nodeCB
	resendNode     bool                   // give the current node to nodeCB even if unchanged
	peersChanged   chan struct{}          // closed and replaced when the peer set changes
	forwardTCP     func(net.Conn, netip.AddrPort)
	forwardUDP     func(net.Conn, netip.AddrPort)
	closers        map[*tracked]struct{}   // listeners and connections to close
	pursuing       map[key.NodePublic]bool // peers whose direct path pursueDirect seeks
}

// New starts a Conn. It returns once the engine runs; the node callback
// fires as soon as the home DERP region is known: at once when the map has
// one region or no STUN, else after the first network check (tens of
// milliseconds with STUN answering, 3 s without).
func New(ctx context.Context, opts Options) (_ *Conn, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.ID == uuid.Nil {
		return nil, errors.New("tunnel: ID is required")
	}
	if opts.DERPMap == nil {
		return nil, errors.New("tunnel: DERP map is required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.DERPPlainHTTP && os.Getenv(derpHTTPKnob) != "true" {
		// derphttp reads the knob at every connect, so setting it now is
		// enough. envknob writes it without synchronization, racing with
		// relay dials in progress: set it once, before any Conn dials.
		envknob.Setenv(derpHTTPKnob, "true")
	}

	addr := tether.TunnelIP(opts.ID)
	c := &Conn{
		logger:         log,
		logf:           libraryLogf(log),
		id:             opts.ID,
		addr:           addr,
		prefix:         netip.PrefixFrom(addr, addr.BitLen()),
		key:            key.NewNode(),
		closed:         make(chan struct{}),
		derpMap:        opts.DERPMap.Clone(),
		blockEndpoints: opts.BlockEndpoints,
		peersChanged:   make(chan struct{}),
		closers:        make(map[*tracked]struct{}),
		nextNodeID:     1,
		lostGrace:      opts.LostPeerGrace,
		noUDPRelay:     opts.DisableUDPRelay,
		allocator:      opts.RelayAllocator,
		timeline:       opts.Timeline,
	}
	if c.timeline == nil {
		c.timeline = func(string, ...any) {}
	}
	if c.lostGrace == 0 {
		c.lostGrace = DefaultLostPeerGrace
	}
	c.peers.Store(&peerTable{})
	c.relays = derpws.Register(derpws.Options{Logger: log.With("component", "derpws"), Force: opts.DERPForceWebSockets, OnChange: c.reapplyDERPMap})
	defer func() {
		if err != nil {
			c.teardown()
		}
	}()

	c.bus = eventbus.NewWithOptions(eventbus.BusOptions{Logf: c.logf})
	c.health = health.NewTracker(c.bus)
	c.health.SetMetricsRegistry(&c.metrics)
	// magicsock keeps its home DERP region fixed while it believes it has no
	// control plane to tell peers about a move. Our coordinator is that
	// control plane: every home change reaches peers through the node
	// callback.
	c.health.GotStreamedMapResponse()
	c.busClient = c.bus.Client("tether.tunnel")
	// magicsock binds IPv4 and IPv6 sockets to possibly different ports and
	// reports them only here; we need both to publish local endpoints.
	eventbus.SubscribeFunc(c.busClient, c.onPortUpdate)
	if c.allocator != nil {
		c.allocResp = eventbus.Publish[magicsock.UDPRelayAllocResp](c.busClient)
		eventbus.SubscribeFunc(c.busClient, c.onRelayAllocReq)
	}

	c.dialer = &tsdial.Dialer{Logf: c.logf}
	c.dialer.SetBus(c.bus)
	c.engine, err = wgengine.NewUserspaceEngine(c.logf, wgengine.Config{
		EventBus:      c.bus,
		ListenPort:    opts.ListenPort,
		Dialer:        c.dialer,
		SetSubsystem:  c.setSubsystem,
		HealthTracker: c.health,
		Metrics:       &c.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("tunnel: start engine: %w", err)
	}
	if c.magic == nil || c.tundev == nil || c.dns == nil {
		return nil, errors.New("tunnel: engine did not expose its subsystems")
	}

	self := &tailcfg.Node{
		Name:       "self",
		Key:        c.key.Public(),
		DiscoKey:   c.magic.DiscoPublicKey(),
		Addresses:  []netip.Prefix{c.prefix},
		AllowedIPs: []netip.Prefix{c.prefix},
	}
	if c.noUDPRelay {
		self.CapMap = tailcfg.NodeCapMap{tailcfg.NodeAttrDisableRelayClient: nil}
	}
	c.self = self.View()

	// The order matters: the wrapper must run before netstack starts
	// reading from it, and netstack needs our address or every dial fails
	// with "network is unreachable".
	c.stack, err = netstack.Create(c.logf, c.tundev, c.engine, c.magic, c.dialer, c.dns, &c.proxyMap)
	if err != nil {
		return nil, fmt.Errorf("tunnel: create netstack: %w", err)
	}
	if err := tuneTCP(c.stack); err != nil {
		return nil, fmt.Errorf("tunnel: %w", err)
	}
	c.tundev.Start()
	c.stack.ProcessLocalIPs = true
	c.stack.GetTCPHandlerForFlow = c.tcpHandlerForFlow
	c.stack.GetUDPHandlerForFlow = c.udpHandlerForFlow
	if err := c.stack.Start(nil); err != nil {
		return nil, fmt.Errorf("tunnel: start netstack: %w", err)
	}
	c.stack.UpdateNetstackIPs(&netmap.NetworkMap{SelfNode: c.self})

	c.engine.SetPeerConfigFunc(c.peerAllowedIPs)
	c.engine.SetPeerByIPPacketFunc(c.peerKeyForIP)
	c.engine.SetPeerForIPFunc(c.peerForIP)
	c.filter = newFilter(c.prefix, nil, nil, nil, c.logf)
	c.engine.SetFilter(c.filter) // a nil filter would drop everything
	c.magic.SetFilter(c.filter)
	c.engine.SetSelfNode(c.self)
	// magicsock uses UDP relays only once it has a valid self node from
	// "the control plane", without the attribute that disables them; and a
	// relay checks its clients' capability on that self node. There are no
	// peers yet.
	c.magic.SetNetworkMap(c.self, nil)
	c.engine.SetStatusCallback(c.onEngineStatus)
	c.magic.SetNetInfoCallback(c.onNetInfo)

	// The DERP map goes first so that setting the key (which starts STUN
	// and the home DERP connection) has somewhere to go.
	c.magic.SetDERPMap(c.relays.Map(c.derpMap))
	err = c.engine.Reconfig(
		&wgcfg.Config{PrivateKey: c.key, Addresses: []netip.Prefix{c.prefix}},
		&router.Config{LocalAddrs: []netip.Prefix{c.prefix}},
		&dns.Config{},
	)
	if err != nil && !errors.Is(err, wgengine.ErrNoChanges) {
		return nil, fmt.Errorf("tunnel: configure engine: %w", err)
	}

	c.setProvisionalHome(c.derpMap)

	c.wg.Add(1)
	go c.nodeLoop()
	c.pokeNode()
	c.logger.Debug("tunnel started", "addr", c.addr, "key", c.key.Public().ShortString(),
		"disco", c.magic.DiscoPublicKey().ShortString())
	return c, nil
}

// tcpMinRTO replaces netstack's minimum retransmission timeout of 200 ms.
// The timeout is still at least the smoothed RTT plus four deviations, so
// this matters only on paths faster than ~200 ms, where waiting 200 ms for
// each lost tail segment throttled a transfer far more than the loss did.
const tcpMinRTO = 10 * time.Millisecond

// tuneTCP lowers the library's minimum retransmission timeout (its TCP
// is Reno with SACK on and RACK off, minimum RTO 200 ms), which under
// loss matters more than anything else: with 0.5% loss at each end's
// router in the NAT lab a download keeps a fifth to a third of its
// lossless speed, against ~4% with the library's settings.
//
// RACK stays off. Its tail loss probe can leave a sender with no
// retransmission timer armed: when the probe and the data before it are
// lost, as they are when a path dies mid-transfer, that side sends nothing
// again until the other side sends something, and a download's other
// side has nothing to send. A download through a port forward hung for
// good after its direct path was blocked (the NAT lab's
// TestLabPathChanges, one run in 36 with five at once on two cores: both
// ends idle, the echoed data unacknowledged); TestEchoResumesAfterOutages
// makes it happen in one process. Nor did RACK help under loss
// once the minimum RTO was low: BenchmarkNAT/loss, two runs each,
// alternated, kept 40 and 31 MB/s under loss with RACK on (0.20, 0.22 of
// lossless) and 39 and 56 MB/s with it off (0.24, 0.36).
func tuneTCP(stack *netstack.Impl) error {
	minRTO := tcpip.TCPMinRTOOption(tcpMinRTO)
	if err := stack.SetTransportProtocolOption(tcp.ProtocolNumber, &minRTO); err != nil {
		return fmt.Errorf("set TCP minimum RTO: %v", err)
	}
	return nil
}

// setSubsystem receives the pieces the engine builds, which netstack and
// the peer plumbing need.
func (c *Conn) setSubsystem(v any) {
	switch v := v.(type) {
	case *magicsock.Conn:
		c.magic = v
	case *tstun.Wrapper:
		c.tundev = v
	case *dns.Manager:
		c.dns = v
	}
}

// Addr returns our tunnel address.
func (c *Conn) Addr() netip.Addr { return c.addr }

// ID returns the ID the Conn was started with.
func (c *Conn) ID() uuid.UUID { return c.id }

// Close stops the Conn and releases everything it holds: listeners,
// connections, sockets and goroutines. It is safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.isClosed = true
		closers := c.closers
		c.closers = make(map[*tracked]struct{})
		c.mu.Unlock()
		// Under peerMu, so that SetPeerLost starts no prober after this.
		c.peerMu.Lock()
		close(c.closed)
		c.peerMu.Unlock()
		c.wg.Wait()
		for t := range closers {
			t.closeUntracked()
		}
		c.teardown()
	})
	return nil
}

// teardown closes the library's pieces in the reverse order of New. The
// engine closes magicsock, WireGuard, the wrapper and the network monitor
// it made; netstack, the dialer and the bus are ours to close.
func (c *Conn) teardown() {
	c.relays.Close() // first: it may call reapplyDERPMap until it returns
	if c.stack != nil {
		c.stack.Close()
	}
	if c.engine != nil {
		c.engine.Close()
		<-c.engine.Done()
	}
	if c.dialer != nil {
		c.dialer.Close()
	}
	if c.busClient != nil {
		c.busClient.Close()
	}
	if c.bus != nil {
		c.bus.Close()
	}
}

func (c *Conn) isClosing() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// libraryLogf bridges the library's printf-style logs into log at Debug.
// Formatting is skipped when Debug is off, because the engine logs a lot.
func libraryLogf(log *slog.Logger) logger.Logf {
	log = log.With("component", "wireguard")
	return func(format string, args ...any) {
		if !log.Enabled(context.Background(), slog.LevelDebug) {
			return
		}
		log.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}

// sleepCtx waits for d, or until ctx is done or the Conn closes.
func (c *Conn) sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.closed:
		return errClosed
	}
}
