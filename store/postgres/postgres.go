// Package postgres is the Store for deployments that keep their state in
// PostgreSQL (github.com/jackc/pgx/v5), migrated at open. It behaves like
// store/sqlite, the embedded default, and passes the same conformance suite
// (store/storetest).
//
// Several Tether server replicas may share one database: everything they
// write goes through single statements or transactions, and migrations take
// an advisory lock so that replicas starting together apply each one once.
// (Package replica has what replicas need to know about each other.)
// Nothing stops a newer replica from migrating the schema under older ones
// that are still running, so a migration must keep working for the release
// before it (add, do not rename or drop), or the release notes must say to
// stop every replica before upgrading.
// Separate Tether deployments can share one database in different schemas
// (choose one with search_path in the URL).
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/pgsetup"
	"github.com/tetherdev/tether/store"
)

// DB is a Store backed by PostgreSQL.
type DB struct {
	pool *pgxpool.Pool
	// adminLock is the advisory lock that serializes the changes that can
	// take an active admin away (see checkNotLastAdmin).
	adminLock int64
}

var _ store.Store = (*DB)(nil)

// Open connects to the PostgreSQL database at url and applies pending
// migrations; other replicas may be using the database already. The URL
// has the form
// postgres://user:password@host:5432/database?sslmode=verify-full, plus an
// optional search_path parameter to choose the schema; pgx's other
// parameters and the PG* environment variables also apply.
//
// Error messages name the host, database and schema but never the
// password. Past parsing, pgx's errors carry no connection string (a failed
// connection names only the user and database), so they are wrapped as
// they are; masking the password wherever it appears in the text would
// mangle messages and, by doing so, show which word is the password.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgsetup.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store: %w", err)
	}
	return open(ctx, cfg)
}

func open(ctx context.Context, cfg *pgxpool.Config) (*DB, error) {
	where := pgsetup.Describe(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL store at %s: %w", where, err)
	}
	// The pool connects lazily, so this first query is where a bad host or
	// password shows up.
	//
	// current_schema is where our unqualified table names land: the first
	// schema on search_path that exists. It is NULL if none does.
	var schema *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s: %s: %w", where, pgsetup.ConnectHint(err), err)
	}
	if schema == nil {
		pool.Close()
		return nil, fmt.Errorf("open PostgreSQL store at %s: no schema on the search_path exists: create the schema, or fix search_path in the URL", where)
	}
	where += " (schema " + *schema + ")"
	db := &DB{pool: pool, adminLock: pgsetup.LockKey("user admins", *schema)}
	if err := db.migrate(ctx, *schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate %s: %w", where, err)
	}
	return db, nil
}

// Close closes the pool, waiting for queries in progress. It returns nil;
// calling it again does nothing.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// migrations are applied in order; tether_schema_migrations has one row per
// migration that has run, numbered from 1. Append only: never edit a
// migration that has shipped.
//
// Compared with store/sqlite's schema: times are timestamptz (microsecond
// precision) and NULL where SQLite stores 0 for "never"; email uniqueness
// folds ASCII case only, like SQLite's NOCASE, because lower() under the C
// collation touches nothing else (and, unlike a locale's lower(), cannot
// change with an operating system upgrade and corrupt the index).
var migrations = []string{
	// 1: users, sessions, templates, workspaces.
	`CREATE TABLE users (
		id uuid PRIMARY KEY,
		username text NOT NULL UNIQUE,
		email text NOT NULL,
		role text NOT NULL,
		password_hash bytea NOT NULL,
		created_at timestamptz NOT NULL
	);
	CREATE UNIQUE INDEX users_email_nocase ON users (lower(email COLLATE "C"));
	CREATE TABLE sessions (
		token_hash text PRIMARY KEY,
		user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at timestamptz NOT NULL,
		expires_at timestamptz NOT NULL
	);
	CREATE TABLE templates (
		id uuid PRIMARY KEY,
		name text NOT NULL UNIQUE,
		agent_url text NOT NULL,
		apps jsonb NOT NULL,
		created_at timestamptz NOT NULL,
		updated_at timestamptz NOT NULL
	);
	CREATE TABLE workspaces (
		id uuid PRIMARY KEY,
		name text NOT NULL,
		owner_id uuid NOT NULL REFERENCES users(id),
		template_id uuid REFERENCES templates(id),
		agent_token_hash text NOT NULL UNIQUE,
		created_at timestamptz NOT NULL,
		agent_connected_at timestamptz,
		agent_disconnected_at timestamptz,
		agent_last_seen_at timestamptz,
		agent_version text NOT NULL DEFAULT '',
		UNIQUE (owner_id, name)
	);`,
	// 2: users can be suspended; a user's sessions are found by user, to
	// end them all. (A column with a default: replicas of the release
	// before keep working, and create active users.)
	`ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'active';
	CREATE INDEX sessions_user_id ON sessions (user_id);`,
	// 3: templates' startup scripts (the timeout in nanoseconds), and each
	// workspace's last result of its script (JSON text,
	// store.EncodeStartupScript; '' for none). Columns with defaults, as
	// in 2.
	`ALTER TABLE templates ADD COLUMN startup_script text NOT NULL DEFAULT '';
	ALTER TABLE templates ADD COLUMN startup_script_timeout bigint NOT NULL DEFAULT 0;
	ALTER TABLE workspaces ADD COLUMN startup_script text NOT NULL DEFAULT '';`,
	// 4: API tokens, named per user. (A new table: replicas of the
	// release before ignore it.)
	`CREATE TABLE api_tokens (
		id uuid PRIMARY KEY,
		name text NOT NULL,
		token_hash text NOT NULL UNIQUE,
		user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at timestamptz NOT NULL,
		expires_at timestamptz NOT NULL,
		last_used_at timestamptz,
		UNIQUE (user_id, name)
	);`,
	// 5: workspace proxies, and secrets every replica shares (the key
	// that signs workspace proxies' hand-off tokens).
	`CREATE TABLE workspace_proxies (
		id uuid PRIMARY KEY,
		name text NOT NULL UNIQUE,
		display_name text NOT NULL,
		icon text NOT NULL,
		token_hash text NOT NULL UNIQUE,
		region_id integer NOT NULL UNIQUE,
		created_at timestamptz NOT NULL,
		url text NOT NULL DEFAULT '',
		wildcard_url text NOT NULL DEFAULT '',
		version text NOT NULL DEFAULT '',
		stun_port integer NOT NULL DEFAULT 0,
		last_heartbeat timestamptz
	);
	CREATE TABLE deployment_secrets (
		name text PRIMARY KEY,
		value bytea NOT NULL
	);`,
}

func (db *DB) migrate(ctx context.Context, schema string) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Replicas starting together wait here for each other, so each
		// migration runs once; the lock is released at commit. Under READ
		// COMMITTED, the statements after it see what the replica before
		// us committed.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgsetup.LockKey("migrate", schema)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		// Named after Tether so as not to mistake another tool's
		// schema_migrations table for ours.
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS tether_schema_migrations (
			version integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create the migrations table: %w", err)
		}
		var version int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM tether_schema_migrations`).Scan(&version); err != nil {
			return fmt.Errorf("read the schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this tether knows (%d): upgrade tether", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO tether_schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return fmt.Errorf("record migration %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// nullTime stores the zero time as NULL, for columns where it means
// "never".
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromNullTime reads a nullable time column: NULL is the zero time.
func fromNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// mapErr turns driver errors into the store's sentinel errors.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, store.ErrConflict)
		case "53100": // disk_full: the statement (or its transaction) was rolled back
			return fmt.Errorf("%s: %w (%v)", what, store.ErrStorageFull, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (db *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, mapErr(err, "count users")
}

// status is u's status, active unless it says otherwise.
func status(u store.User) string {
	if u.Status == "" {
		return string(tether.UserActive)
	}
	return string(u.Status)
}

func (db *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO users (id, username, email, role, status, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		u.ID, u.Username, u.Email, string(u.Role), status(u), u.PasswordHash, u.CreatedAt)
	return mapErr(err, "create user")
}

func (db *DB) CreateFirstUser(ctx context.Context, u store.User) error {
	var created bool
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		// Under READ COMMITTED, two concurrent INSERT ... WHERE NOT EXISTS
		// could both see no users and both insert. EXCLUSIVE mode makes
		// writers to users wait their turn and still lets readers in.
		if _, err := tx.Exec(ctx, `LOCK TABLE users IN EXCLUSIVE MODE`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx,
			`INSERT INTO users (id, username, email, role, status, password_hash, created_at)
			 SELECT $1::uuid, $2::text, $3::text, $4::text, $5::text, $6::bytea, $7::timestamptz WHERE NOT EXISTS (SELECT 1 FROM users)`,
			u.ID, u.Username, u.Email, string(u.Role), status(u), u.PasswordHash, u.CreatedAt)
		created = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return mapErr(err, "create first user")
	}
	if !created {
		return fmt.Errorf("create first user: %w", store.ErrConflict)
	}
	return nil
}

const userColumns = `id, username, email, role, status, password_hash, created_at`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var role, status string
	if err := row.Scan(&u.ID, &u.Username, &u.Email, &role, &status, &u.PasswordHash, &u.CreatedAt); err != nil {
		return u, err
	}
	u.Role = tether.Role(role)
	u.Status = tether.UserStatus(status)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (db *DB) UserByID(ctx context.Context, id uuid.UUID) (store.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	return u, mapErr(err, "user")
}

func (db *DB) UserByLogin(ctx context.Context, login string) (store.User, error) {
	// The email comparison is the expression of users_email_nocase, so it
	// can use that index.
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users WHERE username = $1 OR lower(email COLLATE "C") = lower($1::text COLLATE "C")`, login))
	return u, mapErr(err, "user")
}

// Lists sort with COLLATE "C", byte by byte, as SQLite does, rather than by
// the database's locale.

// limit is a Page's limit as PostgreSQL's LIMIT, where NULL means none.
func limit(p store.Page) any {
	if p.Limit <= 0 {
		return nil
	}
	return p.Limit
}

func (db *DB) ListUsers(ctx context.Context, p store.Page) ([]store.User, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE username COLLATE "C" > $1 ORDER BY username COLLATE "C" LIMIT $2`,
		p.After, limit(p))
	if err != nil {
		return nil, mapErr(err, "list users")
	}
	defer rows.Close()
	var users []store.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, mapErr(err, "list users")
		}
		users = append(users, u)
	}
	return users, mapErr(rows.Err(), "list users")
}

// lockUser reads a user inside a transaction and locks its row until the
// transaction ends, so that changes to one user, and the creation of their
// workspaces, happen one at a time.
func lockUser(ctx context.Context, tx pgx.Tx, id uuid.UUID) (store.User, error) {
	u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 FOR UPDATE`, id))
	return u, mapErr(err, "user")
}

// checkNotLastAdmin fails with ErrLastAdmin if u is the only active admin.
// Only a change that takes an active admin away needs it, in a transaction
// begun by db.inTx with lockAdmins: two transactions that each take a
// different admin away would otherwise, under READ COMMITTED, both count
// the other admin and leave none. With the lock the second waits for the
// first, and its count sees what the first committed. (Locking the admins'
// rows instead would deadlock two such transactions that each hold their
// own user's row.)
func checkNotLastAdmin(ctx context.Context, tx pgx.Tx, u store.User) error {
	if u.Role != tether.RoleAdmin || u.Status != tether.UserActive {
		return nil
	}
	var others int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE role = $1 AND status = $2 AND id != $3`,
		string(tether.RoleAdmin), string(tether.UserActive), u.ID).Scan(&others)
	if err != nil {
		return mapErr(err, "count admins")
	}
	if others == 0 {
		return fmt.Errorf("user %s: %w", u.Username, store.ErrLastAdmin)
	}
	return nil
}

// inTx runs fn in a transaction and maps its errors. With lockAdmins, the
// transaction first takes the advisory lock of the changes that can take
// an admin away, before any row lock, so that such transactions run one at
// a time and never wait for each other in a cycle.
func (db *DB) inTx(ctx context.Context, what string, lockAdmins bool, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if lockAdmins {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, db.adminLock); err != nil {
				return mapErr(err, "take the admin lock")
			}
		}
		return fn(tx)
	})
	var sentinel bool
	for _, e := range []error{store.ErrNotFound, store.ErrLastAdmin, store.ErrHasWorkspaces, store.ErrLimit, store.ErrConflict, store.ErrStorageFull} {
		sentinel = sentinel || errors.Is(err, e)
	}
	if err == nil || sentinel {
		return err
	}
	return mapErr(err, what)
}

func (db *DB) SetUserRole(ctx context.Context, id uuid.UUID, role tether.Role) error {
	return db.inTx(ctx, "set user role", role != tether.RoleAdmin, func(tx pgx.Tx) error {
		u, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if role != tether.RoleAdmin {
			if err := checkNotLastAdmin(ctx, tx, u); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE users SET role = $1 WHERE id = $2`, string(role), id)
		return mapErr(err, "set user role")
	})
}

func (db *DB) SetUserStatus(ctx context.Context, id uuid.UUID, st tether.UserStatus) error {
	return db.inTx(ctx, "set user status", st != tether.UserActive, func(tx pgx.Tx) error {
		u, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if st != tether.UserActive {
			if err := checkNotLastAdmin(ctx, tx, u); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, id); err != nil {
				return mapErr(err, "end sessions")
			}
		}
		_, err = tx.Exec(ctx, `UPDATE users SET status = $1 WHERE id = $2`, string(st), id)
		return mapErr(err, "set user status")
	})
}

func (db *DB) SetUserPassword(ctx context.Context, id uuid.UUID, hash []byte, keepSession string) error {
	return db.inTx(ctx, "set password", false, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, id)
		if err != nil {
			return mapErr(err, "set password")
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("set password: user: %w", store.ErrNotFound)
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND token_hash != $2`, id, keepSession)
		return mapErr(err, "end sessions")
	})
}

func (db *DB) DeleteUser(ctx context.Context, id uuid.UUID, deleteWorkspaces bool) ([]store.Workspace, error) {
	var ws []store.Workspace
	err := db.inTx(ctx, "delete user", true, func(tx pgx.Tx) error {
		// The lock also holds back CreateWorkspace for this owner, so no
		// workspace appears between the check and the delete.
		u, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkNotLastAdmin(ctx, tx, u); err != nil {
			return err
		}
		if ws, err = queryWorkspaces(ctx, tx, workspaceQuery+` WHERE w.owner_id = $1 ORDER BY w.name COLLATE "C"`, id); err != nil {
			return mapErr(err, "list workspaces")
		}
		if len(ws) > 0 && !deleteWorkspaces {
			return fmt.Errorf("delete user %s: %w", u.Username, store.ErrHasWorkspaces)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM workspaces WHERE owner_id = $1`, id); err != nil {
			return mapErr(err, "delete workspaces")
		}
		// Sessions go with the user (ON DELETE CASCADE).
		_, err = tx.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
		return mapErr(err, "delete user")
	})
	return ws, err
}

func (db *DB) CreateSession(ctx context.Context, ss store.Session) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		ss.TokenHash, ss.UserID, ss.CreatedAt, ss.ExpiresAt)
	return mapErr(err, "create session")
}

func (db *DB) SessionByTokenHash(ctx context.Context, hash string) (store.Session, error) {
	ss := store.Session{TokenHash: hash}
	err := db.pool.QueryRow(ctx,
		`SELECT user_id, created_at, expires_at FROM sessions WHERE token_hash = $1`, hash).
		Scan(&ss.UserID, &ss.CreatedAt, &ss.ExpiresAt)
	if err != nil {
		return ss, mapErr(err, "session")
	}
	ss.CreatedAt, ss.ExpiresAt = ss.CreatedAt.UTC(), ss.ExpiresAt.UTC()
	return ss, nil
}

func (db *DB) DeleteSession(ctx context.Context, hash string) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, hash)
	return mapErr(err, "delete session")
}

func (db *DB) DeleteUserSessions(ctx context.Context, userID uuid.UUID, keepSession string) (int, error) {
	tag, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1 AND token_hash != $2`, userID, keepSession)
	if err != nil {
		return 0, mapErr(err, "end sessions")
	}
	return int(tag.RowsAffected()), nil
}

func (db *DB) DeleteExpiredSessions(ctx context.Context, now time.Time) error {
	_, err := db.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at < $1`, now)
	return mapErr(err, "delete expired sessions")
}

func (db *DB) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO api_tokens (id, name, token_hash, user_id, created_at, expires_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Name, t.TokenHash, t.UserID, t.CreatedAt, t.ExpiresAt, nullTime(t.LastUsedAt))
	return mapErr(err, "create API token")
}

const apiTokenColumns = `id, name, token_hash, user_id, created_at, expires_at, last_used_at`

func scanAPIToken(row pgx.Row) (store.APIToken, error) {
	var t store.APIToken
	var used *time.Time
	if err := row.Scan(&t.ID, &t.Name, &t.TokenHash, &t.UserID, &t.CreatedAt, &t.ExpiresAt, &used); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt = t.CreatedAt.UTC(), t.ExpiresAt.UTC(), fromNullTime(used)
	return t, nil
}

func (db *DB) APITokenByHash(ctx context.Context, hash string) (store.APIToken, error) {
	t, err := scanAPIToken(db.pool.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE token_hash = $1`, hash))
	return t, mapErr(err, "API token")
}

func (db *DB) ListAPITokens(ctx context.Context, userID uuid.UUID) ([]store.APIToken, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE user_id = $1 ORDER BY name COLLATE "C"`, userID)
	if err != nil {
		return nil, mapErr(err, "list API tokens")
	}
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.APIToken, error) { return scanAPIToken(row) })
	return ts, mapErr(err, "list API tokens")
}

func (db *DB) DeleteAPIToken(ctx context.Context, userID, id uuid.UUID) (store.APIToken, error) {
	t, err := scanAPIToken(db.pool.QueryRow(ctx,
		`DELETE FROM api_tokens WHERE user_id = $1 AND id = $2 RETURNING `+apiTokenColumns, userID, id))
	return t, mapErr(err, "delete API token")
}

func (db *DB) APITokenUsed(ctx context.Context, id uuid.UUID, t time.Time) error {
	return db.execOne(ctx, "record API token use", `UPDATE api_tokens SET last_used_at = $1 WHERE id = $2`, nullTime(t), id)
}

func (db *DB) UpsertTemplate(ctx context.Context, t store.Template) (store.Template, error) {
	apps, err := json.Marshal(t.Apps)
	if err != nil {
		return t, fmt.Errorf("encode apps: %w", err)
	}
	got, err := scanTemplate(db.pool.QueryRow(ctx,
		`INSERT INTO templates (id, name, agent_url, apps, startup_script, startup_script_timeout, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		 ON CONFLICT (name) DO UPDATE SET agent_url = excluded.agent_url, apps = excluded.apps,
		 startup_script = excluded.startup_script, startup_script_timeout = excluded.startup_script_timeout, updated_at = excluded.updated_at
		 RETURNING `+templateColumns,
		t.ID, t.Name, t.AgentURL, json.RawMessage(apps), t.StartupScript, int64(t.StartupScriptTimeout), t.CreatedAt, t.UpdatedAt))
	if err != nil {
		return t, mapErr(err, "upsert template")
	}
	return got, nil
}

const templateColumns = `id, name, agent_url, apps, startup_script, startup_script_timeout, created_at, updated_at`

func scanTemplate(row pgx.Row) (store.Template, error) {
	var t store.Template
	var apps []byte
	var timeout int64
	if err := row.Scan(&t.ID, &t.Name, &t.AgentURL, &apps, &t.StartupScript, &timeout, &t.CreatedAt, &t.UpdatedAt); err != nil {
		return t, err
	}
	t.StartupScriptTimeout = tether.Duration(timeout)
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	if err := json.Unmarshal(apps, &t.Apps); err != nil {
		return t, fmt.Errorf("decode apps of template %s: %w", t.Name, err)
	}
	if t.Apps == nil {
		t.Apps = []tether.App{}
	}
	return t, nil
}

func (db *DB) TemplateByName(ctx context.Context, name string) (store.Template, error) {
	t, err := scanTemplate(db.pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = $1`, name))
	return t, mapErr(err, "template "+name)
}

func (db *DB) TemplateByID(ctx context.Context, id uuid.UUID) (store.Template, error) {
	t, err := scanTemplate(db.pool.QueryRow(ctx, `SELECT `+templateColumns+` FROM templates WHERE id = $1`, id))
	return t, mapErr(err, "template")
}

func (db *DB) ListTemplates(ctx context.Context) ([]store.Template, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+templateColumns+` FROM templates ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, mapErr(err, "list templates")
	}
	defer rows.Close()
	var ts []store.Template
	for rows.Next() {
		t, err := scanTemplate(rows)
		if err != nil {
			return nil, mapErr(err, "list templates")
		}
		ts = append(ts, t)
	}
	return ts, mapErr(rows.Err(), "list templates")
}

func nullUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

func (db *DB) CreateWorkspace(ctx context.Context, w store.Workspace, maxPerOwner int) error {
	insert := func(ctx context.Context, tx interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	}) error {
		_, err := tx.Exec(ctx,
			`INSERT INTO workspaces (id, name, owner_id, template_id, agent_token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			w.ID, w.Name, w.OwnerID, nullUUID(w.TemplateID), w.AgentTokenHash, w.CreatedAt)
		return mapErr(err, "create workspace")
	}
	if maxPerOwner <= 0 {
		return insert(ctx, db.pool)
	}
	return db.inTx(ctx, "create workspace", false, func(tx pgx.Tx) error {
		// Creations for one owner wait for each other on the owner's
		// row, so that each counts the ones before it.
		if _, err := lockUser(ctx, tx, w.OwnerID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM workspaces WHERE owner_id = $1`, w.OwnerID).Scan(&n); err != nil {
			return mapErr(err, "count workspaces")
		}
		if n >= maxPerOwner {
			return fmt.Errorf("create workspace: %w", store.ErrLimit)
		}
		return insert(ctx, tx)
	})
}

const workspaceQuery = `SELECT w.id, w.name, w.owner_id, u.username, w.template_id, coalesce(t.name, ''),
	w.agent_token_hash, w.created_at, w.agent_connected_at, w.agent_disconnected_at, w.agent_last_seen_at, w.agent_version,
	w.startup_script
	FROM workspaces w JOIN users u ON u.id = w.owner_id LEFT JOIN templates t ON t.id = w.template_id`

func scanWorkspace(row pgx.Row) (store.Workspace, error) {
	var w store.Workspace
	var tmpl *uuid.UUID
	var conn, disc, seen *time.Time
	var startup string
	if err := row.Scan(&w.ID, &w.Name, &w.OwnerID, &w.Owner, &tmpl, &w.Template, &w.AgentTokenHash,
		&w.CreatedAt, &conn, &disc, &seen, &w.AgentVersion, &startup); err != nil {
		return w, err
	}
	var err error
	if w.StartupScript, err = store.DecodeStartupScript(startup); err != nil {
		return w, err
	}
	if tmpl != nil {
		w.TemplateID = *tmpl
	}
	w.CreatedAt = w.CreatedAt.UTC()
	w.AgentConnectedAt, w.AgentDisconnectedAt, w.AgentLastSeenAt = fromNullTime(conn), fromNullTime(disc), fromNullTime(seen)
	return w, nil
}

func (db *DB) WorkspaceByID(ctx context.Context, id uuid.UUID) (store.Workspace, error) {
	w, err := scanWorkspace(db.pool.QueryRow(ctx, workspaceQuery+` WHERE w.id = $1`, id))
	return w, mapErr(err, "workspace")
}

func (db *DB) WorkspaceByOwnerAndName(ctx context.Context, ownerID uuid.UUID, name string) (store.Workspace, error) {
	w, err := scanWorkspace(db.pool.QueryRow(ctx, workspaceQuery+` WHERE w.owner_id = $1 AND w.name = $2`, ownerID, name))
	return w, mapErr(err, "workspace "+name)
}

func (db *DB) WorkspaceByAgentTokenHash(ctx context.Context, hash string) (store.Workspace, error) {
	w, err := scanWorkspace(db.pool.QueryRow(ctx, workspaceQuery+` WHERE w.agent_token_hash = $1`, hash))
	return w, mapErr(err, "workspace")
}

func (db *DB) ListWorkspaces(ctx context.Context, ownerID uuid.UUID, p store.Page) ([]store.Workspace, error) {
	q, args := workspaceQuery+` WHERE true`, []any{}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if ownerID != uuid.Nil {
		q += ` AND w.owner_id = ` + arg(ownerID)
	}
	if p.After != "" {
		owner, name, ok := store.SplitWorkspaceKey(p.After)
		if !ok {
			return nil, fmt.Errorf("list workspaces: %q is not OWNER/NAME", p.After)
		}
		o, n := arg(owner), arg(name)
		q += ` AND (u.username COLLATE "C" > ` + o + ` OR (u.username = ` + o + ` AND w.name COLLATE "C" > ` + n + `))`
	}
	q += ` ORDER BY u.username COLLATE "C", w.name COLLATE "C" LIMIT ` + arg(limit(p))
	ws, err := queryWorkspaces(ctx, db.pool, q, args...)
	return ws, mapErr(err, "list workspaces")
}

// queryWorkspaces runs a workspaceQuery.
func queryWorkspaces(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, q string, args ...any) ([]store.Workspace, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Workspace, error) { return scanWorkspace(row) })
}

// execOne runs a statement that must touch exactly one row.
func (db *DB) execOne(ctx context.Context, what, q string, args ...any) error {
	tag, err := db.pool.Exec(ctx, q, args...)
	if err != nil {
		return mapErr(err, what)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (db *DB) DeleteWorkspace(ctx context.Context, id uuid.UUID) error {
	return db.execOne(ctx, "delete workspace", `DELETE FROM workspaces WHERE id = $1`, id)
}

func (db *DB) SetAgentTokenHash(ctx context.Context, id uuid.UUID, hash string) error {
	return db.execOne(ctx, "set agent token", `UPDATE workspaces SET agent_token_hash = $1 WHERE id = $2`, hash, id)
}

func (db *DB) AgentConnected(ctx context.Context, id uuid.UUID, t time.Time, version string) error {
	return db.execOne(ctx, "record agent connection",
		`UPDATE workspaces SET agent_connected_at = $1, agent_last_seen_at = $1, agent_version = $2 WHERE id = $3`,
		nullTime(t), version, id)
}

func (db *DB) AgentSeen(ctx context.Context, id uuid.UUID, t time.Time) error {
	return db.execOne(ctx, "record agent heartbeat",
		`UPDATE workspaces SET agent_last_seen_at = $1 WHERE id = $2`, nullTime(t), id)
}

func (db *DB) SetStartupScript(ctx context.Context, id uuid.UUID, r tether.StartupScriptResult) error {
	v, err := store.EncodeStartupScript(r)
	if err != nil {
		return err
	}
	return db.execOne(ctx, "record startup script", `UPDATE workspaces SET startup_script = $1 WHERE id = $2`, v, id)
}

func (db *DB) AgentDisconnected(ctx context.Context, id uuid.UUID, t time.Time) error {
	return db.execOne(ctx, "record agent disconnection",
		`UPDATE workspaces SET agent_disconnected_at = $1, agent_last_seen_at = $1 WHERE id = $2`,
		nullTime(t), id)
}
