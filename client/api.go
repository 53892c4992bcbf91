package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/tetherdev/tether"
)

func (c *Client) BuildInfo(ctx context.Context) (tether.BuildInfo, error) {
	var v tether.BuildInfo
	return v, c.do(ctx, http.MethodGet, "/api/v2/buildinfo", nil, &v)
}

// HasFirstUser reports whether the deployment has been set up.
func (c *Client) HasFirstUser(ctx context.Context) (bool, error) {
	var v tether.FirstUserResponse
	return v.Exists, c.do(ctx, http.MethodGet, "/api/v2/users/first", nil, &v)
}

func (c *Client) CreateFirstUser(ctx context.Context, req tether.CreateFirstUserRequest) (tether.LoginResponse, error) {
	var v tether.LoginResponse
	return v, c.do(ctx, http.MethodPost, "/api/v2/users/first", req, &v)
}

func (c *Client) Login(ctx context.Context, req tether.LoginRequest) (tether.LoginResponse, error) {
	var v tether.LoginResponse
	return v, c.do(ctx, http.MethodPost, "/api/v2/users/login", req, &v)
}

func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/api/v2/users/logout", nil, nil)
}

func (c *Client) Me(ctx context.Context) (tether.User, error) {
	var v tether.User
	return v, c.do(ctx, http.MethodGet, "/api/v2/users/me", nil, &v)
}

// Users lists every user, page by page.
func (c *Client) Users(ctx context.Context) ([]tether.User, error) {
	return listAll[tether.User](ctx, c, "/api/v2/users", nil)
}

// userPath is the API path of a user; "me" is the caller.
func userPath(user string) string { return "/api/v2/users/" + url.PathEscape(user) }

func (c *Client) User(ctx context.Context, user string) (tether.User, error) {
	var v tether.User
	return v, c.do(ctx, http.MethodGet, userPath(user), nil, &v)
}

// SetUserStatus suspends a user, or makes them active again (admins).
func (c *Client) SetUserStatus(ctx context.Context, user string, status tether.UserStatus) (tether.User, error) {
	var v tether.User
	return v, c.do(ctx, http.MethodPut, userPath(user)+"/status", tether.UpdateUserStatusRequest{Status: status}, &v)
}

// SetUserRole changes a user's role (admins).
func (c *Client) SetUserRole(ctx context.Context, user string, role tether.Role) (tether.User, error) {
	var v tether.User
	return v, c.do(ctx, http.MethodPut, userPath(user)+"/role", tether.UpdateUserRoleRequest{Role: role}, &v)
}

// SetUserPassword changes a user's password: one's own ("me") with the
// current one, another user's (admins) without.
func (c *Client) SetUserPassword(ctx context.Context, user string, req tether.UpdateUserPasswordRequest) error {
	return c.do(ctx, http.MethodPut, userPath(user)+"/password", req, nil)
}

// DeleteUser deletes a user; one who owns workspaces only with
// deleteWorkspaces, which deletes them too.
func (c *Client) DeleteUser(ctx context.Context, user string, deleteWorkspaces bool) (tether.DeleteUserResponse, error) {
	var v tether.DeleteUserResponse
	path := userPath(user)
	if deleteWorkspaces {
		path += "?delete_workspaces=true"
	}
	return v, c.do(ctx, http.MethodDelete, path, nil, &v)
}

// EndSessions signs a user ("me" for the caller) out of every session.
func (c *Client) EndSessions(ctx context.Context, user string) (tether.EndSessionsResponse, error) {
	var v tether.EndSessionsResponse
	return v, c.do(ctx, http.MethodDelete, userPath(user)+"/sessions", nil, &v)
}

func (c *Client) CreateUser(ctx context.Context, req tether.CreateUserRequest) (tether.User, error) {
	var v tether.User
	return v, c.do(ctx, http.MethodPost, "/api/v2/users", req, &v)
}

// CreateAPIToken creates an API token of the caller's; the response
// carries its secret, which the server never shows again.
func (c *Client) CreateAPIToken(ctx context.Context, req tether.CreateAPITokenRequest) (tether.CreateAPITokenResponse, error) {
	var v tether.CreateAPITokenResponse
	return v, c.do(ctx, http.MethodPost, userPath("me")+"/tokens", req, &v)
}

// APITokens lists a user's API tokens ("me" for the caller's; admins may
// list anyone's).
func (c *Client) APITokens(ctx context.Context, user string) ([]tether.APIToken, error) {
	var v []tether.APIToken
	return v, c.do(ctx, http.MethodGet, userPath(user)+"/tokens", nil, &v)
}

// DeleteAPIToken deletes a user's API token by name or ID.
func (c *Client) DeleteAPIToken(ctx context.Context, user, token string) error {
	return c.do(ctx, http.MethodDelete, userPath(user)+"/tokens/"+url.PathEscape(token), nil, nil)
}

func (c *Client) Templates(ctx context.Context) ([]tether.Template, error) {
	var v []tether.Template
	return v, c.do(ctx, http.MethodGet, "/api/v2/templates", nil, &v)
}

func (c *Client) PushTemplate(ctx context.Context, req tether.PushTemplateRequest) (tether.Template, error) {
	var v tether.Template
	return v, c.do(ctx, http.MethodPost, "/api/v2/templates", req, &v)
}

// Workspaces lists the caller's workspaces, or every workspace for admins
// unless mine is set, page by page.
func (c *Client) Workspaces(ctx context.Context, mine bool) ([]tether.Workspace, error) {
	q := url.Values{}
	if mine {
		q.Set("owner", "me")
	}
	return listAll[tether.Workspace](ctx, c, "/api/v2/workspaces", q)
}

// workspacePath is the API path of a workspace; owner "me" is the caller.
func workspacePath(owner, name string) string {
	return "/api/v2/workspaces/" + url.PathEscape(owner) + "/" + url.PathEscape(name)
}

func (c *Client) Workspace(ctx context.Context, owner, name string) (tether.Workspace, error) {
	var v tether.Workspace
	return v, c.do(ctx, http.MethodGet, workspacePath(owner, name), nil, &v)
}

func (c *Client) CreateWorkspace(ctx context.Context, req tether.CreateWorkspaceRequest) (tether.CreateWorkspaceResponse, error) {
	var v tether.CreateWorkspaceResponse
	return v, c.do(ctx, http.MethodPost, "/api/v2/workspaces", req, &v)
}

func (c *Client) DeleteWorkspace(ctx context.Context, owner, name string) error {
	return c.do(ctx, http.MethodDelete, workspacePath(owner, name), nil, nil)
}

// AgentManifest returns what the agent whose token c carries needs to know.
func (c *Client) AgentManifest(ctx context.Context) (tether.AgentManifest, error) {
	var v tether.AgentManifest
	return v, c.do(ctx, http.MethodGet, "/api/v2/agent/manifest", nil, &v)
}

// ConnectionInfo returns the DERP map and network policy that peers need.
func (c *Client) ConnectionInfo(ctx context.Context) (tether.ConnectionInfo, error) {
	var v tether.ConnectionInfo
	return v, c.do(ctx, http.MethodGet, "/api/v2/connection-info", nil, &v)
}

// CoordinatePath is the API path of a workspace's coordination WebSocket.
func CoordinatePath(owner, name string) string {
	return workspacePath(owner, name) + "/coordinate"
}

// ReportAppHealth sends the agent's apps' health.
func (c *Client) ReportAppHealth(ctx context.Context, r tether.AppHealthReport) error {
	return c.do(ctx, http.MethodPost, "/api/v2/agent/app-health", r, nil)
}

// ReportConnections sends a summary of the agent's active tunnels.
// ReportStartupScript tells the server how the workspace's startup script
// goes (agents only).
func (c *Client) ReportStartupScript(ctx context.Context, r tether.StartupScriptResult) error {
	return c.do(ctx, http.MethodPost, "/api/v2/agent/startup-script", r, nil)
}

// StartupScript returns the last startup script result of a workspace,
// with its output.
func (c *Client) StartupScript(ctx context.Context, owner, name string) (tether.StartupScriptResult, error) {
	var v tether.StartupScriptResult
	return v, c.do(ctx, http.MethodGet, workspacePath(owner, name)+"/startup-script", nil, &v)
}

func (c *Client) ReportConnections(ctx context.Context, r tether.AgentConnectionsReport) error {
	return c.do(ctx, http.MethodPost, "/api/v2/agent/connections", r, nil)
}

func proxyPath(name string) string { return "/api/v2/workspaceproxies/" + url.PathEscape(name) }

// WorkspaceProxies lists the registered workspace proxies (admins).
func (c *Client) WorkspaceProxies(ctx context.Context) ([]tether.WorkspaceProxy, error) {
	var ps []tether.WorkspaceProxy
	err := c.do(ctx, http.MethodGet, "/api/v2/workspaceproxies", nil, &ps)
	return ps, err
}

// CreateWorkspaceProxy registers a workspace proxy and returns its token.
func (c *Client) CreateWorkspaceProxy(ctx context.Context, req tether.CreateWorkspaceProxyRequest) (tether.WorkspaceProxyTokenResponse, error) {
	var resp tether.WorkspaceProxyTokenResponse
	err := c.do(ctx, http.MethodPost, "/api/v2/workspaceproxies", req, &resp)
	return resp, err
}

// DeleteWorkspaceProxy deletes a workspace proxy: its token stops working.
func (c *Client) DeleteWorkspaceProxy(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, proxyPath(name), nil, nil)
}

// RegenerateWorkspaceProxyToken replaces a proxy's token; the old one
// stops working at once.
func (c *Client) RegenerateWorkspaceProxyToken(ctx context.Context, name string) (tether.WorkspaceProxyTokenResponse, error) {
	var resp tether.WorkspaceProxyTokenResponse
	err := c.do(ctx, http.MethodPost, proxyPath(name)+"/token", nil, &resp)
	return resp, err
}
