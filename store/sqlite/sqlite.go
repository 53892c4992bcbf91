// Package sqlite is the embedded Store: one SQLite file in the server's data
// directory, pure Go (modernc.org/sqlite, no cgo), migrated at open.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the database file inside the data directory.
const FileName = "tether.db"

// DB is a Store backed by SQLite.
type DB struct {
	db *sql.DB
}

var _ store.Store = (*DB)(nil)

// Open opens (creating if needed) the database in dir and applies pending
// migrations.
func Open(ctx context.Context, dir string) (*DB, error) {
	path := filepath.Join(dir, FileName)
	dsn := "file:" + path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection serializes writers, which SQLite does anyway, and
	// spares us SQLITE_BUSY retries; the server's load is small.
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, openError(path, "open", err)
	}
	s := &DB{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, openError(path, "migrate", err)
	}
	return s, nil
}

// openError describes a failure to open or migrate the database at path,
// with what to do when it is a matter of permissions.
func openError(path, step string, err error) error {
	if msg, ok := explainOpen(path, err); ok {
		return fmt.Errorf("open database %s: %s (%w)", path, msg, err)
	}
	return fmt.Errorf("%s %s: %w", step, path, err)
}

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

// migrations are applied in order; the database's user_version counts how
// many have run. Append only: never edit a migration that has shipped.
var migrations = []string{
	// 1: users, sessions, templates, workspaces.
	`CREATE TABLE users (
		id TEXT PRIMARY KEY,
		username TEXT NOT NULL UNIQUE,
		email TEXT NOT NULL UNIQUE COLLATE NOCASE,
		role TEXT NOT NULL,
		password_hash BLOB NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE sessions (
		token_hash TEXT PRIMARY KEY,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL
	);
	CREATE TABLE templates (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		agent_url TEXT NOT NULL,
		apps TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE workspaces (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		owner_id TEXT NOT NULL REFERENCES users(id),
		template_id TEXT REFERENCES templates(id),
		agent_token_hash TEXT NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		agent_connected_at INTEGER NOT NULL DEFAULT 0,
		agent_disconnected_at INTEGER NOT NULL DEFAULT 0,
		agent_last_seen_at INTEGER NOT NULL DEFAULT 0,
		agent_version TEXT NOT NULL DEFAULT '',
		UNIQUE (owner_id, name)
	);`,
	// 2: users can be suspended; a user's sessions are found by user, to
	// end them all.
	`ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
	CREATE INDEX sessions_user_id ON sessions (user_id);`,
	// 3: templates' startup scripts, and each workspace's last result of
	// its script (JSON, store.EncodeStartupScript; '' for none).
	`ALTER TABLE templates ADD COLUMN startup_script TEXT NOT NULL DEFAULT '';
	ALTER TABLE templates ADD COLUMN startup_script_timeout INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE workspaces ADD COLUMN startup_script TEXT NOT NULL DEFAULT '';`,
	// 4: API tokens, named per user.
	`CREATE TABLE api_tokens (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		token_hash TEXT NOT NULL UNIQUE,
		user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
		created_at INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		last_used_at INTEGER NOT NULL DEFAULT 0,
		UNIQUE (user_id, name)
	);`,
	// 5: workspace proxies, and secrets every replica shares (the key
	// that signs workspace proxies' hand-off tokens).
	`CREATE TABLE workspace_proxies (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		display_name TEXT NOT NULL,
		icon TEXT NOT NULL,
		token_hash TEXT NOT NULL UNIQUE,
		region_id INTEGER NOT NULL UNIQUE,
		created_at INTEGER NOT NULL,
		url TEXT NOT NULL DEFAULT '',
		wildcard_url TEXT NOT NULL DEFAULT '',
		version TEXT NOT NULL DEFAULT '',
		stun_port INTEGER NOT NULL DEFAULT 0,
		last_heartbeat INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE deployment_secrets (
		name TEXT PRIMARY KEY,
		value BLOB NOT NULL
	);`,
}

func (s *DB) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this tether knows (%d): upgrade tether", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

// Times are stored as Unix nanoseconds; 0 is the zero time.
func toDB(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromDB(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// mapErr turns driver errors into the store's sentinel errors.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%s: %w", what, store.ErrConflict)
		}
		// SQLITE_FULL (the disk, or max_page_count) has no extended
		// codes worth telling apart. SQLite has rolled the statement
		// back: nothing of it was written, and what was is intact.
		if se.Code()&0xff == sqlite3.SQLITE_FULL {
			return fmt.Errorf("%s: %w (%v)", what, store.ErrStorageFull, err)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// inTx runs fn in a transaction. With one connection (see Open), nothing
// else runs meanwhile: the transaction sees and changes the database
// alone. fn must use tx, never s.db, which would wait for itself.
func (s *DB) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err, what)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return mapErr(tx.Commit(), what)
}

func (s *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n)
	return n, mapErr(err, "count users")
}

// status is u's status, active unless it says otherwise.
func status(u store.User) string {
	if u.Status == "" {
		return string(tether.UserActive)
	}
	return string(u.Status)
}

func (s *DB) CreateUser(ctx context.Context, u store.User) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO users (id, username, email, role, status, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.ID.String(), u.Username, u.Email, string(u.Role), status(u), u.PasswordHash, toDB(u.CreatedAt))
	return mapErr(err, "create user")
}

func (s *DB) CreateFirstUser(ctx context.Context, u store.User) error {
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO users (id, username, email, role, status, password_hash, created_at)
		 SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)`,
		u.ID.String(), u.Username, u.Email, string(u.Role), status(u), u.PasswordHash, toDB(u.CreatedAt))
	if err != nil {
		return mapErr(err, "create first user")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("create first user: %w", store.ErrConflict)
	}
	return nil
}

const userColumns = `id, username, email, role, status, password_hash, created_at`

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var u store.User
	var id, role, status string
	var created int64
	if err := row.Scan(&id, &u.Username, &u.Email, &role, &status, &u.PasswordHash, &created); err != nil {
		return u, err
	}
	u.ID = uuid.MustParse(id)
	u.Role = tether.Role(role)
	u.Status = tether.UserStatus(status)
	u.CreatedAt = fromDB(created)
	return u, nil
}

func (s *DB) UserByID(ctx context.Context, id uuid.UUID) (store.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id.String()))
	return u, mapErr(err, "user")
}

func (s *DB) UserByLogin(ctx context.Context, login string) (store.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE username = ? OR email = ? COLLATE NOCASE`, login, login))
	return u, mapErr(err, "user")
}

// limit is a Page's limit as SQLite's LIMIT, where -1 means none.
func limit(p store.Page) int {
	if p.Limit <= 0 {
		return -1
	}
	return p.Limit
}

func (s *DB) ListUsers(ctx context.Context, p store.Page) ([]store.User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE username > ? ORDER BY username LIMIT ?`, p.After, limit(p))
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

// userTx reads a user inside a transaction.
func userTx(ctx context.Context, tx *sql.Tx, id uuid.UUID) (store.User, error) {
	u, err := scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id.String()))
	return u, mapErr(err, "user")
}

// checkNotLastAdmin fails with ErrLastAdmin if u is the only active admin.
// Only a change that takes an active admin away needs it.
func checkNotLastAdmin(ctx context.Context, tx *sql.Tx, u store.User) error {
	if u.Role != tether.RoleAdmin || u.Status != tether.UserActive {
		return nil
	}
	var others int
	err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = ? AND status = ? AND id != ?`,
		string(tether.RoleAdmin), string(tether.UserActive), u.ID.String()).Scan(&others)
	if err != nil {
		return mapErr(err, "count admins")
	}
	if others == 0 {
		return fmt.Errorf("user %s: %w", u.Username, store.ErrLastAdmin)
	}
	return nil
}

func (s *DB) SetUserRole(ctx context.Context, id uuid.UUID, role tether.Role) error {
	return s.inTx(ctx, "set user role", func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if role != tether.RoleAdmin {
			if err := checkNotLastAdmin(ctx, tx, u); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET role = ? WHERE id = ?`, string(role), id.String())
		return mapErr(err, "set user role")
	})
}

func (s *DB) SetUserStatus(ctx context.Context, id uuid.UUID, st tether.UserStatus) error {
	return s.inTx(ctx, "set user status", func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if st != tether.UserActive {
			if err := checkNotLastAdmin(ctx, tx, u); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ?`, id.String()); err != nil {
				return mapErr(err, "end sessions")
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE users SET status = ? WHERE id = ?`, string(st), id.String())
		return mapErr(err, "set user status")
	})
}

func (s *DB) SetUserPassword(ctx context.Context, id uuid.UUID, hash []byte, keepSession string) error {
	return s.inTx(ctx, "set password", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE users SET password_hash = ? WHERE id = ?`, hash, id.String())
		if err != nil {
			return mapErr(err, "set password")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("set password: user: %w", store.ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND token_hash != ?`, id.String(), keepSession)
		return mapErr(err, "end sessions")
	})
}

func (s *DB) DeleteUser(ctx context.Context, id uuid.UUID, deleteWorkspaces bool) ([]store.Workspace, error) {
	var ws []store.Workspace
	err := s.inTx(ctx, "delete user", func(tx *sql.Tx) error {
		u, err := userTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := checkNotLastAdmin(ctx, tx, u); err != nil {
			return err
		}
		if ws, err = queryWorkspaces(ctx, tx, workspaceQuery+` WHERE w.owner_id = ? ORDER BY w.name`, id.String()); err != nil {
			return mapErr(err, "list workspaces")
		}
		if len(ws) > 0 && !deleteWorkspaces {
			return fmt.Errorf("delete user %s: %w", u.Username, store.ErrHasWorkspaces)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM workspaces WHERE owner_id = ?`, id.String()); err != nil {
			return mapErr(err, "delete workspaces")
		}
		// Sessions go with the user (ON DELETE CASCADE).
		_, err = tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id.String())
		return mapErr(err, "delete user")
	})
	return ws, err
}

func (s *DB) CreateSession(ctx context.Context, ss store.Session) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
		ss.TokenHash, ss.UserID.String(), toDB(ss.CreatedAt), toDB(ss.ExpiresAt))
	return mapErr(err, "create session")
}

func (s *DB) SessionByTokenHash(ctx context.Context, hash string) (store.Session, error) {
	ss := store.Session{TokenHash: hash}
	var uid string
	var created, expires int64
	err := s.db.QueryRowContext(ctx,
		`SELECT user_id, created_at, expires_at FROM sessions WHERE token_hash = ?`, hash).
		Scan(&uid, &created, &expires)
	if err != nil {
		return ss, mapErr(err, "session")
	}
	ss.UserID = uuid.MustParse(uid)
	ss.CreatedAt, ss.ExpiresAt = fromDB(created), fromDB(expires)
	return ss, nil
}

func (s *DB) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, hash)
	return mapErr(err, "delete session")
}

func (s *DB) DeleteUserSessions(ctx context.Context, userID uuid.UUID, keepSession string) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE user_id = ? AND token_hash != ?`, userID.String(), keepSession)
	if err != nil {
		return 0, mapErr(err, "end sessions")
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (s *DB) DeleteExpiredSessions(ctx context.Context, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, toDB(now))
	return mapErr(err, "delete expired sessions")
}

func (s *DB) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO api_tokens (id, name, token_hash, user_id, created_at, expires_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.ID.String(), t.Name, t.TokenHash, t.UserID.String(), toDB(t.CreatedAt), toDB(t.ExpiresAt), toDB(t.LastUsedAt))
	return mapErr(err, "create API token")
}

const apiTokenColumns = `id, name, token_hash, user_id, created_at, expires_at, last_used_at`

func scanAPIToken(row interface{ Scan(...any) error }) (store.APIToken, error) {
	var t store.APIToken
	var id, uid string
	var created, expires, used int64
	if err := row.Scan(&id, &t.Name, &t.TokenHash, &uid, &created, &expires, &used); err != nil {
		return t, err
	}
	t.ID, t.UserID = uuid.MustParse(id), uuid.MustParse(uid)
	t.CreatedAt, t.ExpiresAt, t.LastUsedAt = fromDB(created), fromDB(expires), fromDB(used)
	return t, nil
}

func (s *DB) APITokenByHash(ctx context.Context, hash string) (store.APIToken, error) {
	t, err := scanAPIToken(s.db.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE token_hash = ?`, hash))
	return t, mapErr(err, "API token")
}

func (s *DB) ListAPITokens(ctx context.Context, userID uuid.UUID) ([]store.APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE user_id = ? ORDER BY name`, userID.String())
	if err != nil {
		return nil, mapErr(err, "list API tokens")
	}
	defer rows.Close()
	var ts []store.APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, mapErr(err, "list API tokens")
		}
		ts = append(ts, t)
	}
	return ts, mapErr(rows.Err(), "list API tokens")
}

func (s *DB) DeleteAPIToken(ctx context.Context, userID, id uuid.UUID) (store.APIToken, error) {
	t, err := scanAPIToken(s.db.QueryRowContext(ctx,
		`DELETE FROM api_tokens WHERE user_id = ? AND id = ? RETURNING `+apiTokenColumns, userID.String(), id.String()))
	return t, mapErr(err, "delete API token")
}

func (s *DB) APITokenUsed(ctx context.Context, id uuid.UUID, t time.Time) error {
	return s.execOne(ctx, "record API token use", `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`, toDB(t), id.String())
}

func (s *DB) UpsertTemplate(ctx context.Context, t store.Template) (store.Template, error) {
	apps, err := json.Marshal(t.Apps)
	if err != nil {
		return t, fmt.Errorf("encode apps: %w", err)
	}
	_, err = s.db.ExecContext(ctx,
		`INSERT INTO templates (id, name, agent_url, apps, startup_script, startup_script_timeout, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		 ON CONFLICT (name) DO UPDATE SET agent_url = excluded.agent_url, apps = excluded.apps,
		 startup_script = excluded.startup_script, startup_script_timeout = excluded.startup_script_timeout, updated_at = excluded.updated_at`,
		t.ID.String(), t.Name, t.AgentURL, string(apps), t.StartupScript, int64(t.StartupScriptTimeout), toDB(t.CreatedAt), toDB(t.UpdatedAt))
	if err != nil {
		return t, mapErr(err, "upsert template")
	}
	return s.TemplateByName(ctx, t.Name)
}

const templateColumns = `id, name, agent_url, apps, startup_script, startup_script_timeout, created_at, updated_at`

func scanTemplate(row interface{ Scan(...any) error }) (store.Template, error) {
	var t store.Template
	var id, apps string
	var created, updated, timeout int64
	if err := row.Scan(&id, &t.Name, &t.AgentURL, &apps, &t.StartupScript, &timeout, &created, &updated); err != nil {
		return t, err
	}
	t.StartupScriptTimeout = tether.Duration(timeout)
	t.ID = uuid.MustParse(id)
	t.CreatedAt, t.UpdatedAt = fromDB(created), fromDB(updated)
	if err := json.Unmarshal([]byte(apps), &t.Apps); err != nil {
		return t, fmt.Errorf("decode apps of template %s: %w", t.Name, err)
	}
	if t.Apps == nil {
		t.Apps = []tether.App{}
	}
	return t, nil
}

func (s *DB) TemplateByName(ctx context.Context, name string) (store.Template, error) {
	t, err := scanTemplate(s.db.QueryRowContext(ctx, `SELECT `+templateColumns+` FROM templates WHERE name = ?`, name))
	return t, mapErr(err, "template "+name)
}

func (s *DB) TemplateByID(ctx context.Context, id uuid.UUID) (store.Template, error) {
	t, err := scanTemplate(s.db.QueryRowContext(ctx, `SELECT `+templateColumns+` FROM templates WHERE id = ?`, id.String()))
	return t, mapErr(err, "template")
}

func (s *DB) ListTemplates(ctx context.Context) ([]store.Template, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+templateColumns+` FROM templates ORDER BY name`)
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
	return id.String()
}

func (s *DB) CreateWorkspace(ctx context.Context, w store.Workspace, maxPerOwner int) error {
	if maxPerOwner <= 0 {
		maxPerOwner = -1
	}
	// One statement counts and inserts, so concurrent creations (which
	// the single connection runs one by one) cannot pass the limit.
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO workspaces (id, name, owner_id, template_id, agent_token_hash, created_at)
		 SELECT ?, ?, ?, ?, ?, ? WHERE ? < 0 OR (SELECT count(*) FROM workspaces WHERE owner_id = ?) < ?`,
		w.ID.String(), w.Name, w.OwnerID.String(), nullUUID(w.TemplateID), w.AgentTokenHash, toDB(w.CreatedAt),
		maxPerOwner, w.OwnerID.String(), maxPerOwner)
	if err != nil {
		return mapErr(err, "create workspace")
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("create workspace: %w", store.ErrLimit)
	}
	return nil
}

const workspaceQuery = `SELECT w.id, w.name, w.owner_id, u.username, coalesce(w.template_id, ''), coalesce(t.name, ''),
	w.agent_token_hash, w.created_at, w.agent_connected_at, w.agent_disconnected_at, w.agent_last_seen_at, w.agent_version,
	w.startup_script
	FROM workspaces w JOIN users u ON u.id = w.owner_id LEFT JOIN templates t ON t.id = w.template_id`

func scanWorkspace(row interface{ Scan(...any) error }) (store.Workspace, error) {
	var w store.Workspace
	var id, owner, tmpl, startup string
	var created, conn, disc, seen int64
	if err := row.Scan(&id, &w.Name, &owner, &w.Owner, &tmpl, &w.Template, &w.AgentTokenHash,
		&created, &conn, &disc, &seen, &w.AgentVersion, &startup); err != nil {
		return w, err
	}
	var err error
	if w.StartupScript, err = store.DecodeStartupScript(startup); err != nil {
		return w, err
	}
	w.ID, w.OwnerID = uuid.MustParse(id), uuid.MustParse(owner)
	if tmpl != "" {
		w.TemplateID = uuid.MustParse(tmpl)
	}
	w.CreatedAt = fromDB(created)
	w.AgentConnectedAt, w.AgentDisconnectedAt, w.AgentLastSeenAt = fromDB(conn), fromDB(disc), fromDB(seen)
	return w, nil
}

func (s *DB) WorkspaceByID(ctx context.Context, id uuid.UUID) (store.Workspace, error) {
	w, err := scanWorkspace(s.db.QueryRowContext(ctx, workspaceQuery+` WHERE w.id = ?`, id.String()))
	return w, mapErr(err, "workspace")
}

func (s *DB) WorkspaceByOwnerAndName(ctx context.Context, ownerID uuid.UUID, name string) (store.Workspace, error) {
	w, err := scanWorkspace(s.db.QueryRowContext(ctx, workspaceQuery+` WHERE w.owner_id = ? AND w.name = ?`, ownerID.String(), name))
	return w, mapErr(err, "workspace "+name)
}

func (s *DB) WorkspaceByAgentTokenHash(ctx context.Context, hash string) (store.Workspace, error) {
	w, err := scanWorkspace(s.db.QueryRowContext(ctx, workspaceQuery+` WHERE w.agent_token_hash = ?`, hash))
	return w, mapErr(err, "workspace")
}

func (s *DB) ListWorkspaces(ctx context.Context, ownerID uuid.UUID, p store.Page) ([]store.Workspace, error) {
	q, args := workspaceQuery+` WHERE 1`, []any{}
	if ownerID != uuid.Nil {
		q += ` AND w.owner_id = ?`
		args = append(args, ownerID.String())
	}
	if p.After != "" {
		owner, name, ok := store.SplitWorkspaceKey(p.After)
		if !ok {
			return nil, fmt.Errorf("list workspaces: %q is not OWNER/NAME", p.After)
		}
		q += ` AND (u.username > ? OR (u.username = ? AND w.name > ?))`
		args = append(args, owner, owner, name)
	}
	ws, err := queryWorkspaces(ctx, s.db, q+` ORDER BY u.username, w.name LIMIT ?`, append(args, limit(p))...)
	return ws, mapErr(err, "list workspaces")
}

// queryWorkspaces runs a workspaceQuery.
func queryWorkspaces(ctx context.Context, db interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, q string, args ...any) ([]store.Workspace, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ws []store.Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, rows.Err()
}

// execOne runs a statement that must touch exactly one row.
func (s *DB) execOne(ctx context.Context, what, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return mapErr(err, what)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func (s *DB) DeleteWorkspace(ctx context.Context, id uuid.UUID) error {
	return s.execOne(ctx, "delete workspace", `DELETE FROM workspaces WHERE id = ?`, id.String())
}

func (s *DB) SetAgentTokenHash(ctx context.Context, id uuid.UUID, hash string) error {
	return s.execOne(ctx, "set agent token", `UPDATE workspaces SET agent_token_hash = ? WHERE id = ?`, hash, id.String())
}

func (s *DB) AgentConnected(ctx context.Context, id uuid.UUID, t time.Time, version string) error {
	return s.execOne(ctx, "record agent connection",
		`UPDATE workspaces SET agent_connected_at = ?, agent_last_seen_at = ?, agent_version = ? WHERE id = ?`,
		toDB(t), toDB(t), version, id.String())
}

func (s *DB) AgentSeen(ctx context.Context, id uuid.UUID, t time.Time) error {
	return s.execOne(ctx, "record agent heartbeat",
		`UPDATE workspaces SET agent_last_seen_at = ? WHERE id = ?`, toDB(t), id.String())
}

func (s *DB) SetStartupScript(ctx context.Context, id uuid.UUID, r tether.StartupScriptResult) error {
	v, err := store.EncodeStartupScript(r)
	if err != nil {
		return err
	}
	return s.execOne(ctx, "record startup script", `UPDATE workspaces SET startup_script = ? WHERE id = ?`, v, id.String())
}

func (s *DB) AgentDisconnected(ctx context.Context, id uuid.UUID, t time.Time) error {
	return s.execOne(ctx, "record agent disconnection",
		`UPDATE workspaces SET agent_disconnected_at = ?, agent_last_seen_at = ? WHERE id = ?`,
		toDB(t), toDB(t), id.String())
}
