package coordclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/tetherdev/tether"
)

// session runs one coordination WebSocket until it breaks or ctx ends. It
// returns nil when ctx ended (after saying goodbye), and why the connection
// broke otherwise.
//
// Three goroutines share the socket: the reader applies responses, the
// writer sends nodes, the heartbeat pings. None of their contexts ends with
// ctx, because the library closes a socket whose read or write is cancelled
// and the goodbye must still go out. They end through stop, or by the
// socket closing; abort is the last resort, when the coordinator does not
// take the goodbye within leaveTimeout.
func (c *Client) session(ctx context.Context, conn *websocket.Conn) error {
	// One byte over the limit so that the reader can tell an oversized
	// message and say so; the library's check is the backstop.
	conn.SetReadLimit(tether.MaxCoordinateMessage + 1)
	c.connected.Store(true)
	defer c.connected.Store(false)

	ioCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	stop := make(chan struct{})
	errc := make(chan error, 3)
	var writer, others sync.WaitGroup
	others.Go(func() { errc <- c.readLoop(ioCtx, conn) })
	writer.Go(func() { errc <- c.writeLoop(ioCtx, conn, stop) })
	others.Go(func() { errc <- c.heartbeat(conn, stop) })

	var err error
	select {
	case <-ctx.Done():
		close(stop)
		t := time.AfterFunc(leaveTimeout, abort)
		writer.Wait()
		c.leave(ioCtx, conn)
		t.Stop()
	case err = <-errc:
		close(stop)
		conn.CloseNow()
		writer.Wait()
	}
	abort()
	others.Wait()
	return err
}

// leave tells the coordinator this peer is going, and closes the socket.
// Cancelling ctx cuts it short.
func (c *Client) leave(ctx context.Context, conn *websocket.Conn) {
	if err := writeJSON(ctx, conn, &tether.CoordinateRequest{Disconnect: true}); err != nil {
		c.logger.Debug("could not say goodbye to the coordinator", "error", err)
		conn.CloseNow()
		return
	}
	if c.opts.QuickLeave {
		// The Disconnect is written (to the kernel, which delivers it
		// after the process is gone): enough.
		conn.CloseNow()
		return
	}
	// Close waits for the coordinator's close frame, which it sends once
	// it has read the Disconnect; if none comes, cancelling ctx ends the
	// reader's read, which closes the socket and ends the wait.
	conn.Close(websocket.StatusNormalClosure, "peer leaving")
}

func (c *Client) readLoop(ctx context.Context, conn *websocket.Conn) error {
	var buf bytes.Buffer
	for {
		typ, r, err := conn.Reader(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) && ce.Code == tether.CloseAccessRevoked {
				return Permanent(&AccessRevokedError{Reason: ce.Reason})
			}
			return fmt.Errorf("receive: %w", err)
		}
		if typ != websocket.MessageText {
			return fail(conn, websocket.StatusUnsupportedData, "coordination messages must be JSON text, not binary")
		}
		buf.Reset()
		if _, err := buf.ReadFrom(io.LimitReader(r, tether.MaxCoordinateMessage+1)); err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if buf.Len() > tether.MaxCoordinateMessage {
			return fail(conn, websocket.StatusMessageTooBig, fmt.Sprintf("message is larger than %d bytes", tether.MaxCoordinateMessage))
		}
		var resp tether.CoordinateResponse
		if err := json.Unmarshal(buf.Bytes(), &resp); err != nil {
			return fail(conn, websocket.StatusUnsupportedData, "malformed coordinate response: "+err.Error())
		}
		c.dropInvalidNodes(&resp)
		c.peers.Apply(&resp)
	}
}

// dropInvalidNodes removes from resp the peer updates whose node is not
// valid for their peer, logging each. This is where nodes enter this
// process, and the one place they are checked on this side: Peers and the
// Tunnel trust what passes. The coordinator checked them already as they
// reached it, but a peer must not crash or hold unbounded state because
// of what a server (of another version, or broken) sent; an invalid node
// is skipped rather than fatal, as the rest of the message may be good.
func (c *Client) dropInvalidNodes(resp *tether.CoordinateResponse) {
	resp.Peers = slices.DeleteFunc(resp.Peers, func(u tether.PeerUpdate) bool {
		if u.Kind != tether.PeerNode {
			return false
		}
		err := u.Node.Validate(u.ID)
		if err != nil {
			c.logger.Warn("coordinator sent an invalid node", slog.String("peer", u.ID.String()), slog.Any("error", err))
		}
		return err != nil
	})
}

// fail closes the socket with a reason and returns it as an error.
func fail(conn *websocket.Conn, status websocket.StatusCode, reason string) error {
	// A close frame holds 123 bytes of reason; cut on a rune boundary.
	for len(reason) > 123 || !utf8.ValidString(reason) {
		reason = reason[:len(reason)-1]
	}
	conn.Close(status, reason)
	return fmt.Errorf("coordinator broke the protocol: %s", reason)
}

// writeLoop sends the latest node whenever it changes, starting with the
// current one, until stop is closed.
func (c *Client) writeLoop(ctx context.Context, conn *websocket.Conn, stop <-chan struct{}) error {
	var sent *tether.Node
	for {
		if n := c.node.Get(); n != nil && n != sent {
			ctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := writeJSON(ctx, conn, &tether.CoordinateRequest{Node: n})
			cancel()
			if err != nil {
				return fmt.Errorf("send node: %w", err)
			}
			sent = n
		}
		select {
		case <-stop:
			return nil
		case <-c.node.Changed():
		}
	}
}

// heartbeat pings the coordinator so that a dead connection is noticed (a
// half-open TCP connection can otherwise look fine for many minutes) and
// proxies see traffic.
func (c *Client) heartbeat(conn *websocket.Conn, stop <-chan struct{}) error {
	interval := c.opts.HeartbeatInterval
	if interval < 0 {
		<-stop
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
		// Not cancelled by stop: a ping waiting for its pong ends when
		// the socket closes.
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("coordinator did not answer a ping within %v: %w", interval, err)
		}
	}
}

func writeJSON(ctx context.Context, conn *websocket.Conn, req *tether.CoordinateRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return conn.Write(ctx, websocket.MessageText, b)
}
