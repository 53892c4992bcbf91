package postgres

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether/store"
)

const proxyColumns = `id, name, display_name, icon, token_hash, region_id, created_at, url, wildcard_url, version, stun_port, last_heartbeat`

func scanProxy(row interface{ Scan(...any) error }) (store.WorkspaceProxy, error) {
	var p store.WorkspaceProxy
	var hb *time.Time
	if err := row.Scan(&p.ID, &p.Name, &p.DisplayName, &p.Icon, &p.TokenHash, &p.RegionID, &p.CreatedAt,
		&p.URL, &p.WildcardURL, &p.Version, &p.STUNPort, &hb); err != nil {
		return p, err
	}
	p.CreatedAt = p.CreatedAt.UTC()
	p.LastHeartbeat = fromNullTime(hb)
	return p, nil
}

// CreateWorkspaceProxy allocates the region ID in the insert itself; two
// replicas creating proxies at once may pick the same one, and the second
// then fails on the unique region ID with ErrConflict (try again).
func (db *DB) CreateWorkspaceProxy(ctx context.Context, p store.WorkspaceProxy) (store.WorkspaceProxy, error) {
	_, err := db.pool.Exec(ctx,
		`INSERT INTO workspace_proxies (id, name, display_name, icon, token_hash, region_id, created_at)
		 SELECT $1, $2, $3, $4, $5, coalesce(max(region_id) + 1, $6), $7 FROM workspace_proxies`,
		p.ID, p.Name, p.DisplayName, p.Icon, p.TokenHash, store.FirstProxyRegionID, p.CreatedAt)
	if err != nil {
		return p, mapErr(err, "create workspace proxy "+p.Name)
	}
	return db.WorkspaceProxyByName(ctx, p.Name)
}

func (db *DB) WorkspaceProxyByName(ctx context.Context, name string) (store.WorkspaceProxy, error) {
	p, err := scanProxy(db.pool.QueryRow(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies WHERE name = $1`, name))
	return p, mapErr(err, "workspace proxy "+name)
}

func (db *DB) WorkspaceProxyByTokenHash(ctx context.Context, hash string) (store.WorkspaceProxy, error) {
	p, err := scanProxy(db.pool.QueryRow(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies WHERE token_hash = $1`, hash))
	return p, mapErr(err, "workspace proxy")
}

func (db *DB) ListWorkspaceProxies(ctx context.Context) ([]store.WorkspaceProxy, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, mapErr(err, "list workspace proxies")
	}
	defer rows.Close()
	var ps []store.WorkspaceProxy
	for rows.Next() {
		p, err := scanProxy(rows)
		if err != nil {
			return nil, mapErr(err, "list workspace proxies")
		}
		ps = append(ps, p)
	}
	return ps, mapErr(rows.Err(), "list workspace proxies")
}

func (db *DB) DeleteWorkspaceProxy(ctx context.Context, id uuid.UUID) error {
	return db.execOne(ctx, "delete workspace proxy", `DELETE FROM workspace_proxies WHERE id = $1`, id)
}

func (db *DB) SetWorkspaceProxyTokenHash(ctx context.Context, id uuid.UUID, hash string) error {
	return db.execOne(ctx, "set workspace proxy token", `UPDATE workspace_proxies SET token_hash = $1 WHERE id = $2`, hash, id)
}

func (db *DB) WorkspaceProxyHeartbeat(ctx context.Context, id uuid.UUID, hb store.ProxyHeartbeat) error {
	return db.execOne(ctx, "record workspace proxy heartbeat",
		`UPDATE workspace_proxies SET url = $1, wildcard_url = $2, version = $3, stun_port = $4, last_heartbeat = $5 WHERE id = $6`,
		hb.URL, hb.WildcardURL, hb.Version, hb.STUNPort, nullTime(hb.At), id)
}

// DeploymentSecret inserts generate's value unless a row is there, and
// reads back whichever won: replicas asking at once all get one value.
func (db *DB) DeploymentSecret(ctx context.Context, name string, generate func() []byte) ([]byte, error) {
	if _, err := db.pool.Exec(ctx,
		`INSERT INTO deployment_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, generate()); err != nil {
		return nil, mapErr(err, "deployment secret "+name)
	}
	var v []byte
	err := db.pool.QueryRow(ctx, `SELECT value FROM deployment_secrets WHERE name = $1`, name).Scan(&v)
	return v, mapErr(err, "deployment secret "+name)
}
