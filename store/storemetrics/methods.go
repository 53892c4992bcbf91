// One wrapper per method of store.Store, all alike. A method added to
// store.Store passes through unmeasured until it gets one here:
// TestEveryMethodMeasured names the missing ones.

package storemetrics

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

func (m *Store) CountUsers(ctx context.Context) (r0 int, err error) {
	defer m.observe("CountUsers", time.Now(), &err)
	return m.Store.CountUsers(ctx)
}

func (m *Store) CreateUser(ctx context.Context, u store.User) (err error) {
	defer m.observe("CreateUser", time.Now(), &err)
	return m.Store.CreateUser(ctx, u)
}

func (m *Store) CreateFirstUser(ctx context.Context, u store.User) (err error) {
	defer m.observe("CreateFirstUser", time.Now(), &err)
	return m.Store.CreateFirstUser(ctx, u)
}

func (m *Store) UserByID(ctx context.Context, id uuid.UUID) (r0 store.User, err error) {
	defer m.observe("UserByID", time.Now(), &err)
	return m.Store.UserByID(ctx, id)
}

func (m *Store) UserByLogin(ctx context.Context, login string) (r0 store.User, err error) {
	defer m.observe("UserByLogin", time.Now(), &err)
	return m.Store.UserByLogin(ctx, login)
}

func (m *Store) ListUsers(ctx context.Context, p store.Page) (r0 []store.User, err error) {
	defer m.observe("ListUsers", time.Now(), &err)
	return m.Store.ListUsers(ctx, p)
}

func (m *Store) SetUserRole(ctx context.Context, id uuid.UUID, role tether.Role) (err error) {
	defer m.observe("SetUserRole", time.Now(), &err)
	return m.Store.SetUserRole(ctx, id, role)
}

func (m *Store) SetUserStatus(ctx context.Context, id uuid.UUID, status tether.UserStatus) (err error) {
	defer m.observe("SetUserStatus", time.Now(), &err)
	return m.Store.SetUserStatus(ctx, id, status)
}

func (m *Store) SetUserPassword(ctx context.Context, id uuid.UUID, hash []byte, keepSession string) (err error) {
	defer m.observe("SetUserPassword", time.Now(), &err)
	return m.Store.SetUserPassword(ctx, id, hash, keepSession)
}

func (m *Store) DeleteUser(ctx context.Context, id uuid.UUID, deleteWorkspaces bool) (r0 []store.Workspace, err error) {
	defer m.observe("DeleteUser", time.Now(), &err)
	return m.Store.DeleteUser(ctx, id, deleteWorkspaces)
}

func (m *Store) CreateSession(ctx context.Context, s store.Session) (err error) {
	defer m.observe("CreateSession", time.Now(), &err)
	return m.Store.CreateSession(ctx, s)
}

func (m *Store) SessionByTokenHash(ctx context.Context, hash string) (r0 store.Session, err error) {
	defer m.observe("SessionByTokenHash", time.Now(), &err)
	return m.Store.SessionByTokenHash(ctx, hash)
}

func (m *Store) DeleteSession(ctx context.Context, hash string) (err error) {
	defer m.observe("DeleteSession", time.Now(), &err)
	return m.Store.DeleteSession(ctx, hash)
}

func (m *Store) DeleteUserSessions(ctx context.Context, userID uuid.UUID, keepSession string) (r0 int, err error) {
	defer m.observe("DeleteUserSessions", time.Now(), &err)
	return m.Store.DeleteUserSessions(ctx, userID, keepSession)
}

func (m *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (err error) {
	defer m.observe("DeleteExpiredSessions", time.Now(), &err)
	return m.Store.DeleteExpiredSessions(ctx, now)
}

func (m *Store) UpsertTemplate(ctx context.Context, t store.Template) (r0 store.Template, err error) {
	defer m.observe("UpsertTemplate", time.Now(), &err)
	return m.Store.UpsertTemplate(ctx, t)
}

func (m *Store) TemplateByName(ctx context.Context, name string) (r0 store.Template, err error) {
	defer m.observe("TemplateByName", time.Now(), &err)
	return m.Store.TemplateByName(ctx, name)
}

func (m *Store) TemplateByID(ctx context.Context, id uuid.UUID) (r0 store.Template, err error) {
	defer m.observe("TemplateByID", time.Now(), &err)
	return m.Store.TemplateByID(ctx, id)
}

func (m *Store) ListTemplates(ctx context.Context) (r0 []store.Template, err error) {
	defer m.observe("ListTemplates", time.Now(), &err)
	return m.Store.ListTemplates(ctx)
}

func (m *Store) CreateWorkspace(ctx context.Context, w store.Workspace, maxPerOwner int) (err error) {
	defer m.observe("CreateWorkspace", time.Now(), &err)
	return m.Store.CreateWorkspace(ctx, w, maxPerOwner)
}

func (m *Store) WorkspaceByID(ctx context.Context, id uuid.UUID) (r0 store.Workspace, err error) {
	defer m.observe("WorkspaceByID", time.Now(), &err)
	return m.Store.WorkspaceByID(ctx, id)
}

func (m *Store) WorkspaceByOwnerAndName(ctx context.Context, ownerID uuid.UUID, name string) (r0 store.Workspace, err error) {
	defer m.observe("WorkspaceByOwnerAndName", time.Now(), &err)
	return m.Store.WorkspaceByOwnerAndName(ctx, ownerID, name)
}

func (m *Store) WorkspaceByAgentTokenHash(ctx context.Context, hash string) (r0 store.Workspace, err error) {
	defer m.observe("WorkspaceByAgentTokenHash", time.Now(), &err)
	return m.Store.WorkspaceByAgentTokenHash(ctx, hash)
}

func (m *Store) ListWorkspaces(ctx context.Context, ownerID uuid.UUID, p store.Page) (r0 []store.Workspace, err error) {
	defer m.observe("ListWorkspaces", time.Now(), &err)
	return m.Store.ListWorkspaces(ctx, ownerID, p)
}

func (m *Store) DeleteWorkspace(ctx context.Context, id uuid.UUID) (err error) {
	defer m.observe("DeleteWorkspace", time.Now(), &err)
	return m.Store.DeleteWorkspace(ctx, id)
}

func (m *Store) SetAgentTokenHash(ctx context.Context, id uuid.UUID, hash string) (err error) {
	defer m.observe("SetAgentTokenHash", time.Now(), &err)
	return m.Store.SetAgentTokenHash(ctx, id, hash)
}

func (m *Store) AgentConnected(ctx context.Context, id uuid.UUID, t time.Time, version string) (err error) {
	defer m.observe("AgentConnected", time.Now(), &err)
	return m.Store.AgentConnected(ctx, id, t, version)
}

func (m *Store) AgentSeen(ctx context.Context, id uuid.UUID, t time.Time) (err error) {
	defer m.observe("AgentSeen", time.Now(), &err)
	return m.Store.AgentSeen(ctx, id, t)
}

func (m *Store) AgentDisconnected(ctx context.Context, id uuid.UUID, t time.Time) (err error) {
	defer m.observe("AgentDisconnected", time.Now(), &err)
	return m.Store.AgentDisconnected(ctx, id, t)
}

func (m *Store) SetStartupScript(ctx context.Context, id uuid.UUID, r tether.StartupScriptResult) (err error) {
	defer m.observe("SetStartupScript", time.Now(), &err)
	return m.Store.SetStartupScript(ctx, id, r)
}

func (m *Store) CreateAPIToken(ctx context.Context, t store.APIToken) (err error) {
	defer m.observe("CreateAPIToken", time.Now(), &err)
	return m.Store.CreateAPIToken(ctx, t)
}

func (m *Store) ListAPITokens(ctx context.Context, userID uuid.UUID) (_ []store.APIToken, err error) {
	defer m.observe("ListAPITokens", time.Now(), &err)
	return m.Store.ListAPITokens(ctx, userID)
}

func (m *Store) DeleteAPIToken(ctx context.Context, userID, id uuid.UUID) (_ store.APIToken, err error) {
	defer m.observe("DeleteAPIToken", time.Now(), &err)
	return m.Store.DeleteAPIToken(ctx, userID, id)
}

func (m *Store) APITokenUsed(ctx context.Context, id uuid.UUID, t time.Time) (err error) {
	defer m.observe("APITokenUsed", time.Now(), &err)
	return m.Store.APITokenUsed(ctx, id, t)
}

func (m *Store) APITokenByHash(ctx context.Context, hash string) (_ store.APIToken, err error) {
	defer m.observe("APITokenByHash", time.Now(), &err)
	return m.Store.APITokenByHash(ctx, hash)
}

func (m *Store) CreateWorkspaceProxy(ctx context.Context, p store.WorkspaceProxy) (r0 store.WorkspaceProxy, err error) {
	defer m.observe("CreateWorkspaceProxy", time.Now(), &err)
	return m.Store.CreateWorkspaceProxy(ctx, p)
}

func (m *Store) WorkspaceProxyByName(ctx context.Context, name string) (r0 store.WorkspaceProxy, err error) {
	defer m.observe("WorkspaceProxyByName", time.Now(), &err)
	return m.Store.WorkspaceProxyByName(ctx, name)
}

func (m *Store) WorkspaceProxyByTokenHash(ctx context.Context, hash string) (r0 store.WorkspaceProxy, err error) {
	defer m.observe("WorkspaceProxyByTokenHash", time.Now(), &err)
	return m.Store.WorkspaceProxyByTokenHash(ctx, hash)
}

func (m *Store) ListWorkspaceProxies(ctx context.Context) (r0 []store.WorkspaceProxy, err error) {
	defer m.observe("ListWorkspaceProxies", time.Now(), &err)
	return m.Store.ListWorkspaceProxies(ctx)
}

func (m *Store) DeleteWorkspaceProxy(ctx context.Context, id uuid.UUID) (err error) {
	defer m.observe("DeleteWorkspaceProxy", time.Now(), &err)
	return m.Store.DeleteWorkspaceProxy(ctx, id)
}

func (m *Store) SetWorkspaceProxyTokenHash(ctx context.Context, id uuid.UUID, hash string) (err error) {
	defer m.observe("SetWorkspaceProxyTokenHash", time.Now(), &err)
	return m.Store.SetWorkspaceProxyTokenHash(ctx, id, hash)
}

func (m *Store) WorkspaceProxyHeartbeat(ctx context.Context, id uuid.UUID, hb store.ProxyHeartbeat) (err error) {
	defer m.observe("WorkspaceProxyHeartbeat", time.Now(), &err)
	return m.Store.WorkspaceProxyHeartbeat(ctx, id, hb)
}

func (m *Store) DeploymentSecret(ctx context.Context, name string, generate func() []byte) (r0 []byte, err error) {
	defer m.observe("DeploymentSecret", time.Now(), &err)
	return m.Store.DeploymentSecret(ctx, name, generate)
}
