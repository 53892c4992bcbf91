// Package store defines how the server keeps its state: users, sessions,
// templates and workspaces. The server codes against the Store interface;
// store/sqlite is the embedded default and a PostgreSQL implementation can
// satisfy the same interface for multi-replica deployments.
//
// Secrets never reach the store in plain text: passwords arrive as bcrypt
// hashes and tokens as SHA-256 hashes (see HashToken).
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
)

// Errors that callers tell apart. Implementations wrap them with context.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrLastAdmin: the change would leave no active admin, and so nobody
	// who could undo it.
	ErrLastAdmin = errors.New("would leave no active admin")
	// ErrHasWorkspaces: the user still owns workspaces.
	ErrHasWorkspaces = errors.New("user owns workspaces")
	// ErrLimit: the owner has as many workspaces as the limit allows.
	ErrLimit = errors.New("workspace limit reached")
	// ErrStorageFull: the database (its disk) is full. The write was not
	// made; what was written before is intact.
	ErrStorageFull = errors.New("database is full")
)

// Page asks for part of a list, in the list's order: at most Limit items
// (0 means all) that come after the item whose key is After ("" starts at
// the beginning). The key of a user is its username; that of a workspace
// is "OWNER/NAME" (names never contain "/").
type Page struct {
	After string
	Limit int
}

// User is a stored user: the public view plus the password hash.
type User struct {
	tether.User
	PasswordHash []byte
}

// Session is a signed-in session. TokenHash is HashToken of the bearer token.
type Session struct {
	TokenHash string
	UserID    uuid.UUID
	CreatedAt time.Time
	ExpiresAt time.Time
}

// APIToken is a stored API token. TokenHash is HashToken of its secret.
// LastUsedAt is zero if it was never used.
type APIToken struct {
	ID         uuid.UUID
	Name       string
	TokenHash  string
	UserID     uuid.UUID
	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time
}

// Template is a stored template.
type Template = tether.Template

// Workspace is a stored workspace. Agent* fields record the agent's
// connection history; the server derives the status shown to users.
type Workspace struct {
	ID             uuid.UUID
	Name           string
	OwnerID        uuid.UUID
	Owner          string // the owner's username, filled in by reads
	TemplateID     uuid.UUID
	Template       string // the template's name, filled in by reads ("" if none)
	AgentTokenHash string
	CreatedAt      time.Time

	AgentConnectedAt    time.Time // zero if never connected
	AgentDisconnectedAt time.Time // zero if never disconnected
	AgentLastSeenAt     time.Time // refreshed while connected
	AgentVersion        string

	// StartupScript is how the template's startup script went when the
	// agent last ran it; nil if it never did.
	StartupScript *tether.StartupScriptResult
}

// WorkspaceProxy is a registered workspace proxy (`tether wsproxy create`).
// The fields after CreatedAt are what the proxy last said of itself in a
// heartbeat; they are zero until its first.
type WorkspaceProxy struct {
	ID          uuid.UUID
	Name        string
	DisplayName string
	Icon        string
	TokenHash   string
	// RegionID is the DERP region of the proxy's relay, allocated by the
	// store at creation from FirstProxyRegionID up, never reused while the
	// proxy exists.
	RegionID  int
	CreatedAt time.Time

	URL           string // its access URL
	WildcardURL   string // its --wildcard-access-url, "" for none
	Version       string
	STUNPort      int // its STUN server's UDP port on URL's host, 0 for none
	LastHeartbeat time.Time
}

// ProxyHeartbeat is what a proxy says of itself at each heartbeat.
type ProxyHeartbeat struct {
	URL, WildcardURL, Version string
	STUNPort                  int
	At                        time.Time
}

// FirstProxyRegionID is the DERP region ID of the first workspace proxy;
// later ones count up from it. It stays clear of the built-in relay's
// default (999) and of the IDs Tailscale-format maps use (below 1000).
const FirstProxyRegionID = 10000

// Store is the server's persistent state. Every method is safe for
// concurrent use. Lookups and changes that find nothing return an error
// wrapping ErrNotFound; creations that collide with a unique name wrap
// ErrConflict; a write that the database had no room for wraps
// ErrStorageFull.
type Store interface {
	CountUsers(ctx context.Context) (int, error)
	CreateUser(ctx context.Context, u User) error
	// CreateFirstUser creates u only if there are no users yet, atomically;
	// otherwise it returns ErrConflict.
	CreateFirstUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id uuid.UUID) (User, error)
	// UserByLogin finds a user by username or email address.
	UserByLogin(ctx context.Context, login string) (User, error)
	// ListUsers lists users ordered by username.
	ListUsers(ctx context.Context, p Page) ([]User, error)
	// SetUserRole changes a user's role. Demoting the last active admin
	// fails with ErrLastAdmin.
	SetUserRole(ctx context.Context, id uuid.UUID, role tether.Role) error
	// SetUserStatus suspends a user or makes them active again.
	// Suspending also deletes every session of the user, in the same
	// transaction; suspending the last active admin fails with
	// ErrLastAdmin.
	SetUserStatus(ctx context.Context, id uuid.UUID, status tether.UserStatus) error
	// SetUserPassword replaces a user's password hash and, in the same
	// transaction, deletes every session of the user except the one whose
	// token hash is keepSession ("" keeps none).
	SetUserPassword(ctx context.Context, id uuid.UUID, hash []byte, keepSession string) error
	// DeleteUser deletes a user and their sessions. A user who owns
	// workspaces is deleted only with deleteWorkspaces, which deletes them
	// too, in the same transaction, and returns them; otherwise it fails
	// with ErrHasWorkspaces and returns the workspaces in the way.
	// Deleting the last active admin fails with ErrLastAdmin.
	DeleteUser(ctx context.Context, id uuid.UUID, deleteWorkspaces bool) ([]Workspace, error)

	CreateSession(ctx context.Context, s Session) error
	SessionByTokenHash(ctx context.Context, hash string) (Session, error)
	DeleteSession(ctx context.Context, hash string) error
	// DeleteUserSessions deletes every session of a user except the one
	// whose token hash is keepSession ("" keeps none), and returns how
	// many it deleted.
	DeleteUserSessions(ctx context.Context, userID uuid.UUID, keepSession string) (int, error)
	// DeleteExpiredSessions removes sessions that expired before now.
	DeleteExpiredSessions(ctx context.Context, now time.Time) error

	// API tokens are a user's credentials for scripts: unlike sessions
	// they have names, survive the changes that end sessions (signing out
	// everywhere, a new password, suspension), and go only with their
	// deletion, their expiry or their user's deletion.

	// CreateAPIToken stores t; a name the user already uses for a token
	// wraps ErrConflict.
	CreateAPIToken(ctx context.Context, t APIToken) error
	APITokenByHash(ctx context.Context, hash string) (APIToken, error)
	// ListAPITokens lists a user's tokens, expired ones included, by name.
	ListAPITokens(ctx context.Context, userID uuid.UUID) ([]APIToken, error)
	// DeleteAPIToken deletes a token of userID's by ID and returns it.
	DeleteAPIToken(ctx context.Context, userID, id uuid.UUID) (APIToken, error)
	// APITokenUsed records that the token authenticated a request at t.
	APITokenUsed(ctx context.Context, id uuid.UUID, t time.Time) error

	// UpsertTemplate creates the template, or replaces the one with the same
	// name, keeping its ID and creation time. It returns the stored template.
	UpsertTemplate(ctx context.Context, t Template) (Template, error)
	TemplateByName(ctx context.Context, name string) (Template, error)
	TemplateByID(ctx context.Context, id uuid.UUID) (Template, error)
	ListTemplates(ctx context.Context) ([]Template, error)

	// CreateWorkspace creates w. With maxPerOwner > 0, an owner who has
	// that many workspaces already gets ErrLimit instead; the count and
	// the creation are one atomic step, so concurrent creations cannot
	// exceed the limit.
	CreateWorkspace(ctx context.Context, w Workspace, maxPerOwner int) error
	WorkspaceByID(ctx context.Context, id uuid.UUID) (Workspace, error)
	WorkspaceByOwnerAndName(ctx context.Context, ownerID uuid.UUID, name string) (Workspace, error)
	WorkspaceByAgentTokenHash(ctx context.Context, hash string) (Workspace, error)
	// ListWorkspaces lists every workspace, or only ownerID's when it is
	// not uuid.Nil, ordered by owner's username and name.
	ListWorkspaces(ctx context.Context, ownerID uuid.UUID, p Page) ([]Workspace, error)
	DeleteWorkspace(ctx context.Context, id uuid.UUID) error
	SetAgentTokenHash(ctx context.Context, id uuid.UUID, hash string) error
	// AgentConnected records that the workspace's agent connected at t.
	AgentConnected(ctx context.Context, id uuid.UUID, t time.Time, version string) error
	// AgentSeen refreshes the last-seen time of a connected agent.
	AgentSeen(ctx context.Context, id uuid.UUID, t time.Time) error
	// AgentDisconnected records that the agent's connection ended at t.
	AgentDisconnected(ctx context.Context, id uuid.UUID, t time.Time) error
	// SetStartupScript records how the workspace's startup script went,
	// replacing what was recorded before.
	SetStartupScript(ctx context.Context, id uuid.UUID, r tether.StartupScriptResult) error

	// CreateWorkspaceProxy creates p with the next free region ID
	// (p.RegionID is ignored) and returns it as stored. A taken name is
	// ErrConflict.
	CreateWorkspaceProxy(ctx context.Context, p WorkspaceProxy) (WorkspaceProxy, error)
	WorkspaceProxyByName(ctx context.Context, name string) (WorkspaceProxy, error)
	WorkspaceProxyByTokenHash(ctx context.Context, hash string) (WorkspaceProxy, error)
	// ListWorkspaceProxies lists every proxy by name.
	ListWorkspaceProxies(ctx context.Context) ([]WorkspaceProxy, error)
	DeleteWorkspaceProxy(ctx context.Context, id uuid.UUID) error
	SetWorkspaceProxyTokenHash(ctx context.Context, id uuid.UUID, hash string) error
	// WorkspaceProxyHeartbeat records what the proxy said of itself.
	WorkspaceProxyHeartbeat(ctx context.Context, id uuid.UUID, hb ProxyHeartbeat) error

	// DeploymentSecret returns the secret stored under name, storing
	// generate's result first if there is none: every replica gets the
	// same value, however many ask at once.
	DeploymentSecret(ctx context.Context, name string, generate func() []byte) ([]byte, error)

	Close() error
}

// WorkspaceKey is a workspace's key in its list order, for Page.After.
func WorkspaceKey(owner, name string) string { return owner + "/" + name }

// SplitWorkspaceKey splits a WorkspaceKey; ok is false if key is not one.
func SplitWorkspaceKey(key string) (owner, name string, ok bool) {
	owner, name, ok = strings.Cut(key, "/")
	return owner, name, ok && owner != "" && name != ""
}

// HashToken returns the hash under which a bearer token is stored. Tokens
// are 256-bit random values, so a fast hash is as safe as a slow one here,
// and lookups stay cheap.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// EncodeStartupScript and DecodeStartupScript are how both stores keep a
// workspace's startup script result: one JSON text column, "" for none.
// The result is written and read whole, never queried by its parts.
func EncodeStartupScript(r tether.StartupScriptResult) (string, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode startup script result: %w", err)
	}
	return string(b), nil
}

func DecodeStartupScript(s string) (*tether.StartupScriptResult, error) {
	if s == "" {
		return nil, nil
	}
	var r tether.StartupScriptResult
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return nil, fmt.Errorf("decode startup script result: %w", err)
	}
	return &r, nil
}
