package replica

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// deadline is how long a replica may go without a heartbeat before the
// others count it gone.
func (m *Manager) deadline() time.Duration { return MissedHeartbeats * m.interval }

// register writes this replica's row, as new: a replica that restarts
// with the same ID starts over.
func (m *Manager) register(ctx context.Context) error {
	err := m.pool.QueryRow(ctx, `
		INSERT INTO tether_replicas (id, relay_url, hostname, started_at, last_seen_at) VALUES ($1, $2, $3, now(), now())
		ON CONFLICT (id) DO UPDATE SET relay_url = excluded.relay_url, hostname = excluded.hostname,
			started_at = excluded.started_at, last_seen_at = excluded.last_seen_at
		RETURNING started_at, last_seen_at`,
		m.self.ID, m.self.RelayURL, m.self.Hostname).Scan(&m.self.StartedAt, &m.self.LastSeenAt)
	if err != nil {
		return fmt.Errorf("register replica %s at %s: %w", m.self.ID, m.where, err)
	}
	return nil
}

// heartbeatLoop beats every interval until ctx ends, and does the
// housekeeping every cleanupInterval.
func (m *Manager) heartbeatLoop(ctx context.Context) {
	defer close(m.hbDone)
	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	failing := false
	var lastCleanup time.Time // zero: clean up at the first beat
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		// A beat that takes longer than the deadline is too late anyway;
		// bounding it keeps a hung database from stopping the loop.
		tickCtx, cancel := context.WithTimeout(ctx, m.deadline())
		err := m.beat(tickCtx)
		if err == nil {
			m.refreshPeers(tickCtx)
			if time.Since(lastCleanup) >= cleanupInterval {
				lastCleanup = time.Now()
				if err := m.cleanUp(tickCtx); err != nil && ctx.Err() == nil {
					m.logger.Warn("replica housekeeping failed", slog.String("err", err.Error()))
				}
			}
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			// Once per outage, not at every beat.
			failing = true
			m.logger.Warn("replica heartbeat failed; the others count this replica gone if it keeps failing",
				slog.Duration("after", m.deadline()), slog.String("err", err.Error()))
		case err != nil:
			m.logger.Debug("replica heartbeat failed again", slog.String("err", err.Error()))
		case failing:
			failing = false
			m.logger.Info("replica heartbeat works again")
		}
	}
}

// beat writes this replica's heartbeat, and warns if the previous one is so
// old that the others may have counted this replica gone.
func (m *Manager) beat(ctx context.Context) error {
	var prev *time.Time // nil when the row was gone
	var now time.Time
	// The CTE reads the row as it was before the upsert: every part of one
	// statement sees the same snapshot.
	err := m.pool.QueryRow(ctx, `
		WITH prev AS (SELECT last_seen_at FROM tether_replicas WHERE id = $1)
		INSERT INTO tether_replicas (id, relay_url, hostname, started_at, last_seen_at) VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at
		RETURNING (SELECT last_seen_at FROM prev), now()`,
		m.self.ID, m.self.RelayURL, m.self.Hostname, m.self.StartedAt).Scan(&prev, &now)
	if err != nil {
		return fmt.Errorf("write the heartbeat: %w", err)
	}
	switch {
	case prev == nil:
		m.logger.Warn("this replica's row had been removed from tether_replicas; the other replicas counted it gone and will see it come back")
	case now.Sub(*prev) >= m.deadline():
		m.logger.Warn("this replica's heartbeat was late; the other replicas may have counted it gone and will see it come back",
			slog.Duration("since_last", now.Sub(*prev)), slog.Duration("deadline", m.deadline()))
	}
	return nil
}

// refreshPeers reads the live set and reports what changed: OnGone for each
// replica that left it, then OnPeers with the new set. The first call (from
// Join, before any goroutine runs) always calls OnPeers. On error it
// changes nothing: a replica we cannot read about is not gone.
func (m *Manager) refreshPeers(ctx context.Context) {
	rows, err := m.pool.Query(ctx, `
		SELECT id, relay_url, hostname, started_at, last_seen_at FROM tether_replicas
		WHERE id <> $1 AND last_seen_at > now() - $2::bigint * interval '1 microsecond'
		ORDER BY id`, m.self.ID, m.deadline().Microseconds())
	if err != nil {
		m.logger.Debug("read the live replicas", slog.String("err", err.Error()))
		return
	}
	var live []Info
	for rows.Next() {
		var r Info
		if err := rows.Scan(&r.ID, &r.RelayURL, &r.Hostname, &r.StartedAt, &r.LastSeenAt); err != nil {
			rows.Close()
			m.logger.Debug("read the live replicas", slog.String("err", err.Error()))
			return
		}
		r.StartedAt, r.LastSeenAt = r.StartedAt.UTC(), r.LastSeenAt.UTC()
		live = append(live, r)
	}
	if err := rows.Err(); err != nil {
		m.logger.Debug("read the live replicas", slog.String("err", err.Error()))
		return
	}

	m.mu.Lock()
	old, first := m.peers, m.peers == nil
	if live == nil {
		live = []Info{} // so that the next call does not look like the first
	}
	m.peers = live
	m.mu.Unlock()

	var gone []Info
	for _, o := range old {
		if !slices.ContainsFunc(live, func(r Info) bool { return r.ID == o.ID }) {
			gone = append(gone, o)
		}
	}
	for _, g := range gone {
		m.logger.Info("replica gone", slog.String("replica", g.ID.String()), slog.String("hostname", g.Hostname),
			slog.Time("last_seen", g.LastSeenAt))
		if m.onGone != nil {
			m.onGone(g)
		}
	}
	if (first || !sameMembers(old, live)) && m.onPeers != nil {
		m.onPeers(append([]Info(nil), live...))
	}
}

// sameMembers reports whether two live sets, both sorted by ID, hold the
// same replicas with the same addresses. LastSeenAt changes at every beat
// and is not compared.
func sameMembers(a, b []Info) bool {
	return slices.EqualFunc(a, b, func(x, y Info) bool {
		return x.ID == y.ID && x.RelayURL == y.RelayURL && x.Hostname == y.Hostname && x.StartedAt.Equal(y.StartedAt)
	})
}

// cleanUp deletes what nobody needs any more: rows of replicas gone for
// forgetAfter, and big events older than eventRetention.
func (m *Manager) cleanUp(ctx context.Context) error {
	if _, err := m.pool.Exec(ctx, `DELETE FROM tether_replicas WHERE last_seen_at < now() - $1::bigint * interval '1 microsecond'`,
		forgetAfter.Microseconds()); err != nil {
		return fmt.Errorf("delete old replicas: %w", err)
	}
	if _, err := m.pool.Exec(ctx, `DELETE FROM tether_coord_events WHERE created_at < now() - $1::bigint * interval '1 microsecond'`,
		eventRetention.Microseconds()); err != nil {
		return fmt.Errorf("delete old events: %w", err)
	}
	return nil
}
