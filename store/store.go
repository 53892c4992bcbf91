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
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
)

// Errors that callers tell apart. Implementations wrap them with context.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
)

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
}

// Store is the server's persistent state. Every method is safe for
// concurrent use. Lookups that find nothing return an error wrapping
// ErrNotFound; creations that collide with a unique name wrap ErrConflict.
type Store interface {
	CountUsers(ctx context.Context) (int, error)
	CreateUser(ctx context.Context, u User) error
	// CreateFirstUser creates u only if there are no users yet, atomically;
	// otherwise it returns ErrConflict.
	CreateFirstUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id uuid.UUID) (User, error)
	// UserByLogin finds a user by username or email address.
	UserByLogin(ctx context.Context, login string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)

	CreateSession(ctx context.Context, s Session) error
	SessionByTokenHash(ctx context.Context, hash string) (Session, error)
	DeleteSession(ctx context.Context, hash string) error
	// DeleteExpiredSessions removes sessions that expired before now.
	DeleteExpiredSessions(ctx context.Context, now time.Time) error

	// UpsertTemplate creates the template, or replaces the one with the same
	// name, keeping its ID and creation time. It returns the stored template.
	UpsertTemplate(ctx context.Context, t Template) (Template, error)
	TemplateByName(ctx context.Context, name string) (Template, error)
	TemplateByID(ctx context.Context, id uuid.UUID) (Template, error)
	ListTemplates(ctx context.Context) ([]Template, error)

	CreateWorkspace(ctx context.Context, w Workspace) error
	WorkspaceByID(ctx context.Context, id uuid.UUID) (Workspace, error)
	WorkspaceByOwnerAndName(ctx context.Context, ownerID uuid.UUID, name string) (Workspace, error)
	WorkspaceByAgentTokenHash(ctx context.Context, hash string) (Workspace, error)
	// ListWorkspaces lists every workspace, or only ownerID's when it is
	// not uuid.Nil, ordered by owner and name.
	ListWorkspaces(ctx context.Context, ownerID uuid.UUID) ([]Workspace, error)
	DeleteWorkspace(ctx context.Context, id uuid.UUID) error
	SetAgentTokenHash(ctx context.Context, id uuid.UUID, hash string) error
	// AgentConnected records that the workspace's agent connected at t.
	AgentConnected(ctx context.Context, id uuid.UUID, t time.Time, version string) error
	// AgentSeen refreshes the last-seen time of a connected agent.
	AgentSeen(ctx context.Context, id uuid.UUID, t time.Time) error
	// AgentDisconnected records that the agent's connection ended at t.
	AgentDisconnected(ctx context.Context, id uuid.UUID, t time.Time) error

	Close() error
}

// HashToken returns the hash under which a bearer token is stored. Tokens
// are 256-bit random values, so a fast hash is as safe as a slow one here,
// and lookups stay cheap.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
