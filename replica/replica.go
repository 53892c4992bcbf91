// Package replica lets several Tether server replicas share one PostgreSQL
// database. Each replica registers itself in a table and heartbeats there,
// so that the others know which replicas are alive and where their DERP
// relays are; all of them read the same DERP mesh key from the database, so
// that their relays can mesh; and they pass coordinator events to each
// other over PostgreSQL's LISTEN/NOTIFY (see bus.go).
//
// Open creates what it needs in the schema the URL selects (search_path),
// beside the store's tables:
//
//	tether_replicas      one row per replica, upserted at every heartbeat
//	tether_deployment    settings of the whole deployment: the mesh key
//	tether_coord_events  events too big for a notification, sent by reference
//
// Liveness is judged by the database's clock alone (now() when a row is
// written and when the live set is read), so replicas whose clocks
// disagree still agree on who is alive.
package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/pgsetup"
)

// Info is one server replica as the others see it.
type Info struct {
	ID uuid.UUID
	// RelayURL is where other replicas reach its DERP relay, for example
	// http://10.0.0.5:3000; "" if it has none they can reach.
	RelayURL   string
	Hostname   string
	StartedAt  time.Time // by the database's clock
	LastSeenAt time.Time // its last heartbeat, by the database's clock
}

// Options configure Open.
type Options struct {
	// URL is the PostgreSQL URL, as given to --postgres-url. Its
	// search_path chooses the schema, as for store/postgres.
	URL string
	// Self describes this replica: ID (required), RelayURL and Hostname.
	// Join fills in the times.
	Self Info
	// Logger receives what goes wrong in the background (lost heartbeats,
	// a lost listening connection). Nil discards.
	Logger *slog.Logger
	// HeartbeatInterval is how often a replica writes its heartbeat and
	// reads the others'. Zero means DefaultHeartbeatInterval. A replica
	// not seen for MissedHeartbeats intervals is gone.
	HeartbeatInterval time.Duration
}

// Handlers receive what the other replicas do, from Join on. Each may be
// nil. OnPeers and OnGone are called from one goroutine (first from Join
// itself, then from the heartbeat), never concurrently with each other;
// OnEvent and OnResync from another. None is called after Close returns,
// and none may call Close.
type Handlers struct {
	// OnEvent receives each event another replica published, in that
	// replica's order (see Publish), never concurrently with itself. A slow
	// OnEvent delays the events behind it.
	OnEvent func(coordinator.Event)
	// OnResync is called, from OnEvent's goroutine and before the next
	// event, when listening resumed after a lost connection: the events
	// published meanwhile are lost, so what this replica knows of the
	// others may be stale (see coordinator.Resync).
	OnResync func()
	// OnPeers receives the other live replicas, sorted by ID: once during
	// Join, then whenever the set (or a member's RelayURL or Hostname)
	// changes.
	OnPeers func(live []Info)
	// OnGone receives a replica that left (Close) or whose heartbeat
	// stopped, once each time it drops out of the live set. It is called
	// before the OnPeers that no longer lists it. A replica whose
	// heartbeat only stalled and then resumed comes back through OnPeers
	// as if it were new.
	OnGone func(Info)
}

const (
	// DefaultHeartbeatInterval is Options.HeartbeatInterval's default.
	DefaultHeartbeatInterval = 2 * time.Second
	// MissedHeartbeats is how many intervals a replica may go without a
	// heartbeat before the others count it gone. Every replica must use
	// the same interval for this to mean the same thing to all of them.
	MissedHeartbeats = 4
)

// Housekeeping, done by every replica at most once per cleanupInterval.
const (
	cleanupInterval = time.Minute
	// forgetAfter is how long the row of a gone replica stays, for
	// operators to see in the table what left recently.
	forgetAfter = time.Hour
	// eventRetention is how long a big event stays in
	// tether_coord_events: long enough for every listener to read it,
	// even one that is minutes behind.
	eventRetention = 5 * time.Minute
)

// closeTimeout bounds the round trips of Close and of a failed Join, so
// that an unreachable database cannot hang a shutdown.
const closeTimeout = 5 * time.Second

// meshKeyName is the mesh key's row in tether_deployment.
const meshKeyName = "derp_mesh_key"

// ErrClosed is returned by Publish and Join after Close.
var ErrClosed = errors.New("replica manager is closed")

// Manager is this replica's membership in the deployment. Its methods are
// safe for concurrent use, but for Join and Close.
//
// A Manager comes to life in two steps, so that the coordinator and the
// relay can be built between them: Open connects and reads the mesh key,
// and a Manager is then already the coordinator's Bus (Publish works);
// Join registers the replica and starts handing the others' events and
// membership to Handlers, which by then can name the coordinator and the
// relay themselves. Nothing the other replicas do is missed between the
// two steps, because this replica is not yet registered: they do not
// count it, and its own peers have not connected.
type Manager struct {
	self     Info // StartedAt as registered
	interval time.Duration
	logger   *slog.Logger

	// Set by Join before its goroutines start, read only by them and by
	// Join itself.
	onEvent  func(coordinator.Event)
	onResync func()
	onPeers  func([]Info)
	onGone   func(Info)

	pool       *pgxpool.Pool
	listenConf *pgx.ConnConfig // for the listener's reconnections
	channel    string          // the notification channel of our schema
	where      string          // host, port, database and schema, for messages
	meshKey    string

	// ctx ends at Close and stops every goroutine; hbCancel stops only
	// the heartbeat (for tests that play a replica that hangs).
	ctx        context.Context
	cancel     context.CancelFunc
	hbCancel   context.CancelFunc
	hbDone     chan struct{}
	listenDone chan struct{}

	// listenerPID is the backend process of the listening connection,
	// for tests that break it.
	listenerPID atomic.Uint32

	// joinMu makes Close wait for a Join in progress; joined says whether
	// the heartbeat and the listener run (then hbDone and listenDone get
	// closed when they stop).
	joinMu sync.Mutex
	joined bool // guarded by joinMu

	mu    sync.Mutex
	peers []Info // the other live replicas, sorted by ID

	closeOnce sync.Once
	closeErr  error
}

var _ coordinator.Bus = (*Manager)(nil)

// Open connects to the database at o.URL and creates the tables and the
// mesh key if this replica is the first of the deployment. The Manager can
// then publish and tell the mesh key, but it is not yet a member of the
// deployment: Join makes it one. Close it in either case. ctx bounds only
// Open.
//
// Errors name the host, database and schema but never the password.
func Open(ctx context.Context, o Options) (*Manager, error) {
	cfg, err := pgsetup.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	switch {
	case o.Self.ID == uuid.Nil:
		return nil, errors.New("start replica: Self.ID is required")
	case o.HeartbeatInterval < 0:
		return nil, fmt.Errorf("start replica: negative heartbeat interval %v", o.HeartbeatInterval)
	}
	m := &Manager{
		self:     o.Self,
		interval: o.HeartbeatInterval,
		logger:   o.Logger,
		where:    pgsetup.Describe(cfg.ConnConfig),
		// The listener keeps the pool's settings, application_name
		// included, on a connection of its own: LISTEN belongs to a
		// session, and the pool would hand that session to anyone.
		listenConf: cfg.ConnConfig.Copy(),
	}
	if m.interval == 0 {
		m.interval = DefaultHeartbeatInterval
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	m.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start replica at %s: %w", m.where, err)
	}
	if err := m.setUp(ctx); err != nil {
		m.pool.Close()
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

// Join makes this replica a member of the deployment: it starts listening
// for the other replicas' events, registers, calls h.OnPeers with the
// replicas alive now, and from then on hands h what the others do until
// Close. ctx bounds only Join. Call it once; after a failed Join, only
// Close remains.
func (m *Manager) Join(ctx context.Context, h Handlers) error {
	m.joinMu.Lock()
	defer m.joinMu.Unlock()
	switch {
	case m.ctx.Err() != nil:
		return ErrClosed
	case m.hbDone != nil:
		return errors.New("replica: Join called twice")
	}
	m.onEvent, m.onResync, m.onPeers, m.onGone = h.OnEvent, h.OnResync, h.OnPeers, h.OnGone
	// A Join that fails leaves hbDone set, so that it cannot be tried
	// again with half of its work done.
	m.hbDone = make(chan struct{})

	conn, err := m.listen(ctx)
	if err != nil {
		return fmt.Errorf("listen for other replicas' events at %s: %w", m.where, err)
	}
	if err := m.register(ctx); err != nil {
		closeConn(conn)
		return err
	}
	// The first read of the live set decides what Join reports; the
	// heartbeat reports changes from there.
	m.refreshPeers(ctx)

	var hbCtx context.Context
	hbCtx, m.hbCancel = context.WithCancel(m.ctx)
	m.listenDone = make(chan struct{})
	m.joined = true
	go m.heartbeatLoop(hbCtx)
	go m.listenLoop(conn)
	m.logger.Info("replica registered", slog.String("replica", m.self.ID.String()),
		slog.String("database", m.where), slog.Int("other_replicas", len(m.Peers())))
	return nil
}

// setUp connects, creates the tables and reads (or creates) the mesh key.
func (m *Manager) setUp(ctx context.Context) error {
	// The pool connects lazily, so this first query is where a bad host or
	// password shows up.
	//
	// current_schema is where our unqualified table names land: the first
	// schema on search_path that exists. It is NULL if none does.
	var schema *string
	if err := m.pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("connect to PostgreSQL at %s: %s: %w", m.where, pgsetup.ConnectHint(err), err)
	}
	if schema == nil {
		return fmt.Errorf("start replica at %s: no schema on the search_path exists: create the schema, or fix search_path in the URL", m.where)
	}
	m.where += " (schema " + *schema + ")"
	m.channel = channelName(*schema)

	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand's promise since Go 1.24)
	err := pgx.BeginFunc(ctx, m.pool, func(tx pgx.Tx) error {
		// CREATE TABLE IF NOT EXISTS is not safe against itself: two
		// replicas starting together could both try to create a table.
		// The lock, released at commit, makes them take turns.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgsetup.LockKey("replica tables", *schema)); err != nil {
			return fmt.Errorf("take the lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			CREATE TABLE IF NOT EXISTS tether_replicas (
				id uuid PRIMARY KEY,
				relay_url text NOT NULL,
				hostname text NOT NULL,
				started_at timestamptz NOT NULL,
				last_seen_at timestamptz NOT NULL
			);
			CREATE TABLE IF NOT EXISTS tether_deployment (
				key text PRIMARY KEY,
				value text NOT NULL
			);
			CREATE TABLE IF NOT EXISTS tether_coord_events (
				id bigserial PRIMARY KEY,
				payload jsonb NOT NULL,
				created_at timestamptz NOT NULL DEFAULT now()
			);
			CREATE INDEX IF NOT EXISTS tether_coord_events_created_at ON tether_coord_events (created_at)`); err != nil {
			return fmt.Errorf("create the tables: %w", err)
		}
		// Whoever comes first sets the key; everyone reads the winner's.
		if _, err := tx.Exec(ctx, `INSERT INTO tether_deployment (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`,
			meshKeyName, hex.EncodeToString(key)); err != nil {
			return fmt.Errorf("store a new mesh key: %w", err)
		}
		if err := tx.QueryRow(ctx, `SELECT value FROM tether_deployment WHERE key = $1`, meshKeyName).Scan(&m.meshKey); err != nil {
			return fmt.Errorf("read the mesh key: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set up the replica tables at %s: %w", m.where, err)
	}
	if b, err := hex.DecodeString(m.meshKey); err != nil || len(b) != 32 {
		// Not shown: it is a secret, even when malformed.
		return fmt.Errorf("start replica at %s: the %s in tether_deployment is not 64 hex characters; delete that row to have a new one made",
			m.where, meshKeyName)
	}
	return nil
}

// MeshKey returns the deployment's DERP mesh key, the same for every
// replica: 64 hex characters (32 random bytes), made by the first replica
// that started on the database.
func (m *Manager) MeshKey() string { return m.meshKey }

// Peers returns the other live replicas as of the last heartbeat, sorted
// by ID.
func (m *Manager) Peers() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Info(nil), m.peers...)
}

// Close stops every goroutine and deletes this replica's row, so that the
// others count it gone at their next heartbeat rather than after
// MissedHeartbeats. Calling it again returns the first call's result.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.joinMu.Lock()
		joined := m.joined
		m.joinMu.Unlock()
		if joined {
			// The heartbeat must have stopped before the row goes, or it
			// could write the row back.
			<-m.hbDone
			<-m.listenDone
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if _, err := m.pool.Exec(ctx, `DELETE FROM tether_replicas WHERE id = $1`, m.self.ID); err != nil {
			m.closeErr = fmt.Errorf("remove replica %s from %s: %w", m.self.ID, m.where, err)
		}
		m.pool.Close()
	})
	return m.closeErr
}

// channelName is the notification channel of the deployment in schema.
// Channels are per database, not per schema, so a deployment's channel
// names its schema to keep deployments that share a database apart. A
// channel name is an identifier, cut at 63 bytes; a schema name too long
// for that is replaced by its hash.
func channelName(schema string) string {
	const prefix = "tether_coord."
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("%s%016x", prefix, h.Sum64())
}

// closeConn closes a connection that is broken or no longer wanted.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	c.Close(ctx)
}
