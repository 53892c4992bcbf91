package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

// DefaultHeartbeatInterval is how often a WebSocket stream pings its peer
// when WebSocketOptions leaves it zero. Well under the minute after which
// common proxies drop idle connections; a peer that has not answered a ping
// by the next one is considered gone.
const DefaultHeartbeatInterval = 15 * time.Second

// WebSocketOptions configures a WebSocket stream. The zero value is usable.
type WebSocketOptions struct {
	// Logger receives protocol violations. Nil discards.
	Logger *slog.Logger
	// HeartbeatInterval is the time between pings. Zero means
	// DefaultHeartbeatInterval; negative disables pings.
	HeartbeatInterval time.Duration
	// Version is the coordination protocol version the peer speaks
	// (tether.CoordinateProtocolVersions); empty means 1.0. Updates that a
	// peer of that version would misread are not sent to it: UDP relays
	// (tether.PeerUpdate.Relay) before 1.1, which a 1.0 peer would take
	// for an ordinary peer and let in.
	Version string
}

// ProtocolError is why a WebSocket stream closed the socket on its peer: the
// close status it sent and the reason, which is also the error text.
type ProtocolError struct {
	Status websocket.StatusCode
	Reason string
}

func (e *ProtocolError) Error() string { return e.Reason }

// WebSocket adapts the server end of a coordination WebSocket to a Stream.
//
// It reads text messages of at most tether.MaxCoordinateMessage bytes, each
// one JSON CoordinateRequest (unknown fields are ignored), and closes the
// socket with a reason on anything else: StatusMessageTooBig for an
// oversized message, StatusUnsupportedData for a binary or malformed one.
// A node that is not valid for this peer is the coordinator's to refuse
// (ErrInvalidNode), and Close sends StatusPolicyViolation for it. It pings
// the peer every heartbeat interval, so that dead sockets are noticed and
// proxies see traffic, and closes the socket when a ping goes unanswered.
//
// Recv must be called continuously (the coordinator does), since it is what
// reads the pongs. Close must be called when the stream is done.
type WebSocket struct {
	conn   *websocket.Conn
	peerID uuid.UUID
	logger *slog.Logger
	relays bool // the peer understands PeerUpdate.Relay

	stopHeartbeat context.CancelFunc
	heartbeatDone chan struct{}

	mu    sync.Mutex
	cause error // why this side closed the socket, if it did; guarded by mu
}

// NewWebSocket returns a stream for the peer with the given ID over conn,
// an accepted WebSocket, and starts its heartbeat.
func NewWebSocket(conn *websocket.Conn, peerID uuid.UUID, opts WebSocketOptions) *WebSocket {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// One byte over the limit, so that Recv sees an oversized message and
	// closes with its own reason; the library's check is the backstop.
	conn.SetReadLimit(tether.MaxCoordinateMessage + 1)
	ctx, cancel := context.WithCancel(context.Background())
	w := &WebSocket{
		conn:          conn,
		peerID:        peerID,
		logger:        logger,
		relays:        tether.CoordinateRelays(opts.Version),
		stopHeartbeat: cancel,
		heartbeatDone: make(chan struct{}),
	}
	interval := opts.HeartbeatInterval
	if interval == 0 {
		interval = DefaultHeartbeatInterval
	}
	go w.heartbeat(ctx, interval)
	return w
}

func (w *WebSocket) heartbeat(ctx context.Context, interval time.Duration) {
	defer close(w.heartbeatDone)
	if interval < 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := w.conn.Ping(pctx)
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			w.setCause(fmt.Errorf("peer did not answer a ping within %v", interval))
			w.conn.CloseNow()
		}
		return
	}
}

func (w *WebSocket) setCause(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cause == nil {
		w.cause = err
	}
}

func (w *WebSocket) getCause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cause
}

// Recv reads the next request. After a protocol violation it has closed the
// socket and returns a *ProtocolError.
func (w *WebSocket) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	typ, r, err := w.conn.Reader(ctx)
	if err != nil {
		if cause := w.getCause(); cause != nil {
			return nil, cause
		}
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, w.fail(websocket.StatusUnsupportedData, "coordination messages must be JSON text, not binary")
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(r, tether.MaxCoordinateMessage+1)); err != nil {
		return nil, err
	}
	if buf.Len() > tether.MaxCoordinateMessage {
		return nil, w.fail(websocket.StatusMessageTooBig, fmt.Sprintf("message is larger than %d bytes", tether.MaxCoordinateMessage))
	}
	var req tether.CoordinateRequest
	if err := json.Unmarshal(buf.Bytes(), &req); err != nil {
		return nil, w.fail(websocket.StatusUnsupportedData, "malformed coordinate request: "+err.Error())
	}
	// The node is checked by the coordinator, for every kind of stream.
	return &req, nil
}

// Revoke ends the stream because its peer lost its access: it closes the
// socket with tether.CloseAccessRevoked and reason (which the peer shows
// its user), and Recv returns a *RevokedError, so that the coordinator
// tells the peer's counterparts it left. Revoke may be called from any
// goroutine, while Recv runs; it returns once the peer has answered the
// close, or after the library's close timeout.
func (w *WebSocket) Revoke(reason string) {
	reason = closeReason(reason)
	w.setCause(&RevokedError{Reason: reason})
	w.conn.Close(websocket.StatusCode(tether.CloseAccessRevoked), reason)
}

// fail closes the socket with status and reason and returns the matching
// *ProtocolError.
func (w *WebSocket) fail(status websocket.StatusCode, reason string) error {
	reason = closeReason(reason)
	pe := &ProtocolError{Status: status, Reason: reason}
	w.setCause(pe)
	w.logger.Warn("closing coordination socket", slog.String("peer", w.peerID.String()),
		slog.Int("status", int(status)), slog.String("reason", reason))
	w.conn.Close(status, reason)
	return pe
}

// Send writes resp as one or more messages, each within
// tether.MaxCoordinateMessage, leaving out what the peer's protocol version
// does not understand.
func (w *WebSocket) Send(ctx context.Context, resp *tether.CoordinateResponse) error {
	if !w.relays {
		resp = withoutRelays(resp)
		if resp == nil {
			return nil
		}
	}
	return w.send(ctx, resp)
}

// withoutRelays returns resp without the updates about UDP relays, or nil
// if nothing is left. Updates that say a peer left stay: a relay's are
// about an ID the peer never heard of, which it ignores.
func withoutRelays(resp *tether.CoordinateResponse) *tether.CoordinateResponse {
	keep := make([]tether.PeerUpdate, 0, len(resp.Peers))
	for _, u := range resp.Peers {
		if !u.Relay {
			keep = append(keep, u)
		}
	}
	if len(keep) == len(resp.Peers) {
		return resp
	}
	if len(keep) == 0 && resp.DERPMap == nil {
		return nil
	}
	return &tether.CoordinateResponse{Peers: keep, DERPMap: resp.DERPMap}
}

func (w *WebSocket) send(ctx context.Context, resp *tether.CoordinateResponse) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	if len(b) <= tether.MaxCoordinateMessage {
		return w.conn.Write(ctx, websocket.MessageText, b)
	}
	// Too big for one message: the DERP map alone, then the peers in
	// halves until each part fits.
	if resp.DERPMap != nil && len(resp.Peers) > 0 {
		if err := w.send(ctx, &tether.CoordinateResponse{DERPMap: resp.DERPMap}); err != nil {
			return err
		}
		return w.send(ctx, &tether.CoordinateResponse{Peers: resp.Peers})
	}
	if len(resp.Peers) < 2 {
		return fmt.Errorf("response of %d bytes cannot be split under %d", len(b), tether.MaxCoordinateMessage)
	}
	half := len(resp.Peers) / 2
	if err := w.send(ctx, &tether.CoordinateResponse{Peers: resp.Peers[:half]}); err != nil {
		return err
	}
	return w.send(ctx, &tether.CoordinateResponse{Peers: resp.Peers[half:]})
}

// Close stops the heartbeat and closes the socket, with a status and reason
// that say why the stream ended: err is what ServeAgent or ServeClient
// returned. If Recv already closed the socket, Close only stops the
// heartbeat.
func (w *WebSocket) Close(err error) error {
	w.stopHeartbeat()
	<-w.heartbeatDone
	status, reason := websocket.StatusNormalClosure, ""
	var (
		pe      *ProtocolError
		revoked *RevokedError
	)
	switch {
	case err == nil:
	case errors.As(err, &pe):
		status, reason = pe.Status, pe.Reason
	case errors.As(err, &revoked):
		status, reason = websocket.StatusCode(tether.CloseAccessRevoked), revoked.Reason
	case errors.Is(err, ErrReplaced):
		status, reason = websocket.StatusPolicyViolation, ErrReplaced.Error()
	case errors.Is(err, ErrInvalidNode):
		status, reason = websocket.StatusPolicyViolation, err.Error()
	case errors.Is(err, context.Canceled):
		status, reason = websocket.StatusGoingAway, "coordinator shutting down"
	default:
		status, reason = websocket.StatusInternalError, "coordination stream failed"
	}
	cerr := w.conn.Close(status, closeReason(reason))
	if errors.Is(cerr, net.ErrClosed) {
		return nil
	}
	return cerr
}

// closeReason cuts reason to what a close frame can carry (123 bytes)
// without splitting a UTF-8 sequence.
func closeReason(reason string) string {
	const max = 123
	if len(reason) <= max {
		return reason
	}
	reason = reason[:max]
	for len(reason) > 0 && !utf8.ValidString(reason) {
		reason = reason[:len(reason)-1]
	}
	return reason
}
