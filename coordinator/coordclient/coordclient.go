// Package coordclient runs a peer's half of the coordination protocol (see
// tether.CoordinateRequest) over a WebSocket: it sends the peer's node,
// applies the nodes of the peers the coordinator introduces to a Tunnel, and
// reconnects with backoff when the WebSocket breaks. It is used by agents and
// CLIs and imports no server code. Its rules for applying the coordinator's
// responses (Peers) serve the server's own tunnels too, which reach the
// coordinator in process.
//
// # Tunnels outlive the coordinator
//
// The coordinator only introduces peers; traffic between them does not pass
// through it. So a broken coordination WebSocket changes nothing in the
// Tunnel: peers stay, and tunnels that are up keep working while the client
// reconnects. After the reconnect the client sends its node again, and the
// coordinator sends the nodes of the peers that are still there.
//
// Peers leave the Tunnel in two ways:
//
//   - PeerDisconnected (the peer left on purpose): removed at once.
//   - PeerLost (the peer's own coordination WebSocket broke): kept for
//     LostPeerTimeout, because its tunnel may well still work and
//     it will likely reconnect and be reintroduced, which cancels the
//     removal. A peer that never comes back is removed when it expires.
//
// A peer that left while this client was itself disconnected is never
// reported. So on every reconnect, every peer the client knows is treated as
// lost until the coordinator mentions it again (the coordinator sends the
// nodes of all current counterparts as soon as a peer connects).
//
// The Tunnel is told which peers are lost (Tunnel.SetPeerLost), so that it
// can tell a peer whose coordination merely broke from one that is gone,
// and end the connections of the latter. It is told only what this client
// knows: while the client's own WebSocket is down, no peer counts as lost,
// since the coordinator (a server restarting, say) may be all that is
// missing.
package coordclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/mailbox"
	"github.com/tetherdev/tether/internal/retry"
)

// Tunnel is what the client configures: the peer's WireGuard side.
type Tunnel interface {
	// UpsertPeer adds the peer with the given ID, or updates its node.
	// n is valid for id (tether.Node.Validate): it was checked where it
	// entered the process.
	UpsertPeer(id uuid.UUID, n *tether.Node) error
	// UpsertRelay adds the deployment's UDP relay with the given ID, or
	// updates its node (tether.PeerUpdate.Relay): a candidate relay for
	// the tunnel's paths, and not a peer. n is valid for id.
	UpsertRelay(id uuid.UUID, n *tether.Node) error
	// RemovePeer removes the peer or relay; unknown IDs are ignored.
	RemovePeer(id uuid.UUID)
	// SetDERPMap replaces the relays the tunnel uses.
	SetDERPMap(m *tailcfg.DERPMap)
	// SetPeerLost says that the coordinator has lost the peer (true), or
	// that this is no longer known (false). UpsertPeer and RemovePeer end
	// the lost state by themselves.
	SetPeerLost(id uuid.UUID, lost bool)
}

// Defaults for the Options durations left zero.
const (
	DefaultLostPeerTimeout   = 15 * time.Minute
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultMinBackoff        = 250 * time.Millisecond
	DefaultMaxBackoff        = 30 * time.Second
)

// writeTimeout bounds one message write; a coordinator that takes longer to
// accept a few kilobytes is as good as gone.
const writeTimeout = 10 * time.Second

// leaveTimeout bounds the goodbye (Disconnect and the close handshake) when
// Run's context ends.
const leaveTimeout = 2 * time.Second

// Options configures a Client.
type Options struct {
	// Dial opens a coordination WebSocket (with the protocol version and
	// credentials in the request). Errors it wraps with Permanent end Run
	// (for example an HTTP 401, 403 or 404); others are retried. Required.
	Dial func(ctx context.Context) (*websocket.Conn, error)
	// Tunnel receives peers and DERP maps. Required.
	Tunnel Tunnel
	// Logger receives connection events. Nil discards.
	Logger *slog.Logger
	// LostPeerTimeout is how long a lost peer stays in the Tunnel before it
	// is removed, unless reintroduced. Zero means DefaultLostPeerTimeout.
	LostPeerTimeout time.Duration
	// HeartbeatInterval is the time between pings to the coordinator; one
	// unanswered by the next means the connection is dead. Zero means
	// DefaultHeartbeatInterval; negative disables pings.
	HeartbeatInterval time.Duration
	// QuickLeave makes the goodbye, when Run's context ends, the
	// Disconnect alone: the socket is closed without waiting for the
	// coordinator's close frame, which costs a round trip to the server.
	// The coordinator acts on the Disconnect, not on the close. For a
	// process that exits once Run returns (the CLI), where that wait is
	// on the way out.
	QuickLeave bool
	// MinBackoff and MaxBackoff bound the wait between reconnects, which
	// doubles after each failure, with jitter, and starts again from
	// MinBackoff after a connection that stayed up longer than MaxBackoff.
	// Zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
}

// permanentError marks a Dial error that retrying will not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// AccessRevokedError is why Run ended when the server took this peer's
// access away (tether.CloseAccessRevoked): the user was suspended, deleted
// or signed out, or may no longer reach the workspace. Reason, from the
// server, says which. Reconnecting cannot help.
type AccessRevokedError struct{ Reason string }

func (e *AccessRevokedError) Error() string {
	return "the server ended the connection: " + e.Reason
}

// Permanent wraps err so that Run returns it instead of retrying. It
// returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// retryAfterError marks a Dial error after which Run waits at least wait.
type retryAfterError struct {
	err  error
	wait time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that Run waits at least d (rather than its
// backoff, if that is shorter) before dialing again, without logging the
// failure itself: the dialer has said what happened. It returns nil for
// nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, wait: d}
}

// Client is one peer's coordination client.
type Client struct {
	opts   Options
	logger *slog.Logger
	peers  *Peers

	running   atomic.Bool
	connected atomic.Bool

	// node is this peer's latest node: SetNode never blocks, and the
	// writer always sends the latest one.
	node mailbox.Mailbox[*tether.Node]
}

// New returns a Client. It does nothing until Run.
func New(opts Options) *Client {
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{
		opts:   opts,
		logger: logger,
		peers:  NewPeers(PeersOptions{Tunnel: opts.Tunnel, Logger: logger, LostPeerTimeout: opts.LostPeerTimeout}),
	}
}

// SetNode sets this peer's node. The client sends the latest one as soon as
// it is connected, skipping any that were replaced meanwhile, and again
// after every reconnect. It never blocks, so it may be called from the
// tunnel's node callback.
func (c *Client) SetNode(n *tether.Node) { c.node.Put(n) }

// Connected reports whether the coordination WebSocket is up.
func (c *Client) Connected() bool { return c.connected.Load() }

// AwaitPeer waits until the coordinator has introduced the peer with the
// given ID (and it is not lost), and returns its node.
func (c *Client) AwaitPeer(ctx context.Context, id uuid.UUID) (*tether.Node, error) {
	return c.peers.Await(ctx, id)
}

// Run connects to the coordinator and keeps connecting until ctx ends, Dial
// returns a Permanent error, or the server revokes the peer's access
// (*AccessRevokedError). When ctx ends it tells the coordinator it
// is leaving (so that peers hear "disconnected", not "lost"), closes the
// WebSocket and returns nil. Peers stay in the Tunnel after Run returns,
// and pending lost-peer removals are cancelled: the Tunnel's owner decides
// what happens next. Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if c.opts.Dial == nil || c.opts.Tunnel == nil {
		return errors.New("coordclient: Dial and Tunnel are required")
	}
	if c.running.Swap(true) {
		return errors.New("coordclient: Run called twice")
	}
	defer c.peers.Close()

	b := retry.Backoff{Min: c.opts.MinBackoff, Max: c.opts.MaxBackoff}
	for {
		conn, err := c.opts.Dial(ctx)
		if ctx.Err() != nil {
			if conn != nil {
				conn.CloseNow()
			}
			return nil
		}
		var pe *permanentError
		if errors.As(err, &pe) {
			return fmt.Errorf("dial coordinator: %w", err)
		}
		if err == nil {
			c.peers.SessionStarted()
			start := time.Now()
			c.logger.Debug("connected to the coordinator")
			err = c.session(ctx, conn)
			// Blind until the next session: whatever the coordinator
			// said about lost peers may no longer hold.
			c.peers.SessionEnded()
			if ctx.Err() != nil {
				return nil
			}
			if errors.As(err, &pe) {
				return err
			}
			if time.Since(start) > c.opts.MaxBackoff {
				b.Reset()
			}
		}
		wait := b.Next()
		if ra := (*retryAfterError)(nil); errors.As(err, &ra) {
			wait = max(wait, ra.wait)
			c.logger.Debug("coordinator refused the connection, retrying", slog.Any("error", err), slog.Duration("retry_in", wait))
		} else {
			c.logger.Info("coordinator connection failed, retrying", slog.Any("error", err), slog.Duration("retry_in", wait))
		}
		if !retry.Sleep(ctx, wait) {
			return nil
		}
	}
}
