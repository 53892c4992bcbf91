package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/pgsetup"
	"github.com/tetherdev/tether/internal/retry"
)

// The bus. A replica publishes an event with NOTIFY on its deployment's
// channel (channelName), whose payload is the event's JSON. PostgreSQL
// refuses payloads from 8000 bytes, so a bigger event (a node with many
// endpoints and regions) goes into tether_coord_events instead, and the
// notification carries only a pointer, {"ref": id, "replica": publisher},
// that listeners resolve with a SELECT. The insert and its NOTIFY are one
// statement, so one transaction: PostgreSQL delivers the notification at
// commit, when the row is there to read.
//
// Each replica listens on one connection of its own and hands what arrives
// to OnEvent in order. PostgreSQL delivers a session's notifications in
// commit order; as Publish returns only after its commit, the events of
// one goroutine calling Publish arrive in the order it called. Notifications
// are not stored: while a listener is disconnected, it misses what is sent.
const (
	// maxNotifyPayload is the largest event sent inline, with room to spare
	// under PostgreSQL's limit of 8000 bytes.
	maxNotifyPayload = 7000
	// Reconnection delays of the listener (retry.Backoff's bounds).
	minListenBackoff = 100 * time.Millisecond
	maxListenBackoff = 10 * time.Second
)

// message is a notification's payload: an event, or a pointer to one in
// tether_coord_events (Ref set, and of the event only Replica).
type message struct {
	coordinator.Event
	Ref int64 `json:"ref,omitempty"`
}

// Publish sends ev to every other replica. ev.Replica must be this
// replica's ID or zero (then Publish fills it in).
//
// Events published by one goroutine arrive in the order of its calls, as
// Publish returns only once the event is committed. Events published by
// concurrent callers arrive in some order, not necessarily the one they
// were called in. A replica whose listening connection is down misses
// what is published meanwhile.
func (m *Manager) Publish(ctx context.Context, ev coordinator.Event) error {
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	switch ev.Replica {
	case m.self.ID:
	case uuid.Nil:
		ev.Replica = m.self.ID
	default:
		return fmt.Errorf("publish %s event of replica %s through replica %s", ev.Kind, ev.Replica, m.self.ID)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", ev.Kind, err)
	}
	if len(payload) < maxNotifyPayload {
		_, err = m.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, m.channel, string(payload))
	} else {
		_, err = m.pool.Exec(ctx, `
			WITH ev AS (INSERT INTO tether_coord_events (payload) VALUES ($2::jsonb) RETURNING id)
			SELECT pg_notify($1, json_build_object('ref', id, 'replica', $3::uuid)::text) FROM ev`,
			m.channel, string(payload), m.self.ID)
	}
	if err != nil {
		return fmt.Errorf("publish %s event (%d bytes): %w", ev.Kind, len(payload), err)
	}
	return nil
}

// listen opens the listening connection.
func (m *Manager) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, m.listenConf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pgsetup.ConnectHint(err), err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{m.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("listen on %s: %w", m.channel, err)
	}
	m.listenerPID.Store(conn.PgConn().PID())
	return conn, nil
}

// listenLoop receives notifications on conn until Close, reconnecting when
// the connection breaks.
func (m *Manager) listenLoop(conn *pgx.Conn) {
	defer close(m.listenDone)
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	ctx := m.ctx
	b := retry.Backoff{Min: minListenBackoff, Max: maxListenBackoff}
	for {
		if conn == nil {
			connectCtx, cancel := context.WithTimeout(ctx, maxListenBackoff)
			c, err := m.listen(connectCtx)
			cancel()
			if ctx.Err() != nil {
				if c != nil {
					closeConn(c)
				}
				return
			}
			if err != nil {
				wait := b.Next()
				m.logger.Debug("reconnect to listen for other replicas' events", slog.Duration("retry_in", wait),
					slog.String("err", err.Error()))
				if !retry.Sleep(ctx, wait) {
					return
				}
				continue
			}
			conn = c
			b.Reset()
			m.logger.Info("listening for other replicas' events again; asking them to repeat what they hold, since events published meanwhile are lost")
			if m.onResync != nil {
				m.onResync()
			}
		}

		n, err := m.wait(ctx, conn)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			closeConn(conn)
			conn = nil
			m.logger.Warn("lost the connection that listens for other replicas' events; reconnecting. "+
				"Events they publish until then are lost", slog.String("err", err.Error()))
		case n != nil:
			m.receive(ctx, n.Payload)
		}
	}
}

// wait returns the next notification, or nil and no error if none came
// within the deadline and the connection still answers. The check catches
// connections that died silently (a failover, a dropped network path), on
// which a wait without end would never fail.
func (m *Manager) wait(ctx context.Context, conn *pgx.Conn) (*pgconn.Notification, error) {
	waitCtx, cancel := context.WithTimeout(ctx, m.deadline())
	n, err := conn.WaitForNotification(waitCtx)
	cancel()
	if n != nil || err == nil {
		// A notification that came with an error is still good; the
		// error, if it is lasting, comes back at the next wait.
		return n, nil
	}
	// A timeout leaves the connection usable (pgconn closes it on any
	// other error); ask it whether it is alive.
	if ctx.Err() != nil || !pgconn.Timeout(err) || conn.IsClosed() {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, m.deadline())
	defer cancel()
	if err := conn.Ping(pingCtx); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	return nil, nil
}

// receive decodes one notification and hands its event to OnEvent, unless
// it is our own.
func (m *Manager) receive(ctx context.Context, payload string) {
	var msg message
	if err := json.Unmarshal([]byte(payload), &msg); err != nil {
		m.logger.Warn("ignoring a notification that is not an event", slog.String("err", err.Error()),
			slog.Int("bytes", len(payload)))
		return
	}
	if msg.Replica == m.self.ID {
		return
	}
	ev := msg.Event
	if msg.Ref != 0 {
		var err error
		if ev, err = m.fetch(ctx, msg.Ref); err != nil {
			if ctx.Err() == nil {
				m.logger.Warn("lost an event of another replica", slog.String("replica", msg.Replica.String()),
					slog.Int64("ref", msg.Ref), slog.String("err", err.Error()))
			}
			return
		}
	}
	if m.onEvent != nil {
		m.onEvent(ev)
	}
}

// fetch reads a big event from tether_coord_events.
func (m *Manager) fetch(ctx context.Context, ref int64) (coordinator.Event, error) {
	var ev coordinator.Event
	ctx, cancel := context.WithTimeout(ctx, m.deadline())
	defer cancel()
	var payload []byte
	err := m.pool.QueryRow(ctx, `SELECT payload FROM tether_coord_events WHERE id = $1`, ref).Scan(&payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return ev, fmt.Errorf("event %d is no longer in tether_coord_events (kept %v)", ref, eventRetention)
	}
	if err != nil {
		return ev, fmt.Errorf("read event %d: %w", ref, err)
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ev, fmt.Errorf("decode event %d: %w", ref, err)
	}
	return ev, nil
}
