package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/google/uuid"
	"github.com/tetherdev/tether/store"
)

const proxyColumns = `id, name, display_name, icon, token_hash, region_id, created_at, url, wildcard_url, version, stun_port, last_heartbeat`

func scanProxy(row interface{ Scan(...any) error }) (store.WorkspaceProxy, error) {
	var p store.WorkspaceProxy
	var id string
	var created, hb int64
	if err := row.Scan(&id, &p.Name, &p.DisplayName, &p.Icon, &p.TokenHash, &p.RegionID, &created,
		&p.URL, &p.WildcardURL, &p.Version, &p.STUNPort, &hb); err != nil {
		return p, err
	}
	p.ID = uuid.MustParse(id)
	p.CreatedAt, p.LastHeartbeat = fromDB(created), fromDB(hb)
	return p, nil
}

func (s *DB) CreateWorkspaceProxy(ctx context.Context, p store.WorkspaceProxy) (store.WorkspaceProxy, error) {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO workspace_proxies (id, name, display_name, icon, token_hash, region_id, created_at)
		 SELECT ?, ?, ?, ?, ?, coalesce(max(region_id) + 1, ?), ? FROM workspace_proxies`,
		p.ID.String(), p.Name, p.DisplayName, p.Icon, p.TokenHash, store.FirstProxyRegionID, toDB(p.CreatedAt))
	if err != nil {
		return p, mapErr(err, "create workspace proxy "+p.Name)
	}
	return s.WorkspaceProxyByName(ctx, p.Name)
}

func (s *DB) WorkspaceProxyByName(ctx context.Context, name string) (store.WorkspaceProxy, error) {
	p, err := scanProxy(s.db.QueryRowContext(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies WHERE name = ?`, name))
	return p, mapErr(err, "workspace proxy "+name)
}

func (s *DB) WorkspaceProxyByTokenHash(ctx context.Context, hash string) (store.WorkspaceProxy, error) {
	p, err := scanProxy(s.db.QueryRowContext(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies WHERE token_hash = ?`, hash))
	return p, mapErr(err, "workspace proxy")
}

func (s *DB) ListWorkspaceProxies(ctx context.Context) ([]store.WorkspaceProxy, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+proxyColumns+` FROM workspace_proxies ORDER BY name`)
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

func (s *DB) DeleteWorkspaceProxy(ctx context.Context, id uuid.UUID) error {
	return s.execOne(ctx, "delete workspace proxy", `DELETE FROM workspace_proxies WHERE id = ?`, id.String())
}

func (s *DB) SetWorkspaceProxyTokenHash(ctx context.Context, id uuid.UUID, hash string) error {
	return s.execOne(ctx, "set workspace proxy token", `UPDATE workspace_proxies SET token_hash = ? WHERE id = ?`, hash, id.String())
}

func (s *DB) WorkspaceProxyHeartbeat(ctx context.Context, id uuid.UUID, hb store.ProxyHeartbeat) error {
	return s.execOne(ctx, "record workspace proxy heartbeat",
		`UPDATE workspace_proxies SET url = ?, wildcard_url = ?, version = ?, stun_port = ?, last_heartbeat = ? WHERE id = ?`,
		hb.URL, hb.WildcardURL, hb.Version, hb.STUNPort, toDB(hb.At), id.String())
}

func (s *DB) DeploymentSecret(ctx context.Context, name string, generate func() []byte) ([]byte, error) {
	var v []byte
	err := s.inTx(ctx, "deployment secret "+name, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM deployment_secrets WHERE name = ?`, name).Scan(&v)
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		v = generate()
		_, err = tx.ExecContext(ctx, `INSERT INTO deployment_secrets (name, value) VALUES (?, ?)`, name, v)
		return err
	})
	return v, err
}
