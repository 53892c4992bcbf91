package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// agentStaleAfter is how long after its last heartbeat an agent still counts
// as connected. It covers a server that died without recording the
// disconnection; a clean disconnection shows at once.
const agentStaleAfter = 3 * agentHeartbeat

// workspaceView turns a stored workspace into what the API shows.
func (s *Server) workspaceView(ws store.Workspace, apps []tether.App) tether.Workspace {
	v := tether.Workspace{
		ID:           ws.ID,
		Name:         ws.Name,
		Owner:        ws.Owner,
		OwnerID:      ws.OwnerID,
		Template:     ws.Template,
		AgentStatus:  tether.AgentDisconnected,
		AgentVersion: ws.AgentVersion,
		AgentIP:      tether.TunnelIP(ws.ID).String(),
		Apps:         s.appHealth.view(ws.ID, apps),
		CreatedAt:    ws.CreatedAt,
	}
	if ws.StartupScript != nil {
		st := ws.StartupScript.StartupScriptStatus
		v.StartupScript = &st
	}
	if relayed, direct := s.terminalPaths.get(ws.ID); relayed+direct > 0 {
		v.WebTerminals = &tether.WebTerminals{Direct: direct, Relayed: relayed}
	}
	if !ws.AgentLastSeenAt.IsZero() {
		seen := ws.AgentLastSeenAt
		v.LastSeen = &seen
	}
	connected := !ws.AgentConnectedAt.IsZero() && ws.AgentConnectedAt.After(ws.AgentDisconnectedAt) &&
		s.now().Sub(ws.AgentLastSeenAt) < agentStaleAfter
	if connected {
		v.AgentStatus = tether.AgentConnected
		v.Connection = s.connections.get(ws.ID)
		now := s.now()
		v.LastSeen = &now
	}
	return v
}

// templateApps returns the apps of a workspace's template, caching lookups
// within one listing.
func (s *Server) templateApps(r *http.Request, ws store.Workspace, cache map[uuid.UUID][]tether.App) ([]tether.App, error) {
	if ws.TemplateID == uuid.Nil {
		return nil, nil
	}
	if apps, ok := cache[ws.TemplateID]; ok {
		return apps, nil
	}
	t, err := s.store.TemplateByID(r.Context(), ws.TemplateID)
	if err != nil {
		return nil, err
	}
	cache[ws.TemplateID] = t.Apps
	return t.Apps, nil
}

func (s *Server) getWorkspaces(w http.ResponseWriter, r *http.Request, u store.User) error {
	owner := u.ID
	if u.Role == tether.RoleAdmin && r.URL.Query().Get("owner") != "me" {
		owner = uuid.Nil
	}
	p, err := readPage(r)
	if err != nil {
		return err
	}
	if _, _, ok := store.SplitWorkspaceKey(p.After); p.After != "" && !ok {
		return tether.Errorf(tether.EINVALID, "after %q is not a cursor this server gave", p.After)
	}
	list, err := s.store.ListWorkspaces(r.Context(), owner, p)
	if err != nil {
		return err
	}
	list = pageEnd(w, r, p, list, func(ws store.Workspace) string { return store.WorkspaceKey(ws.Owner, ws.Name) })
	cache := map[uuid.UUID][]tether.App{}
	out := make([]tether.Workspace, 0, len(list))
	for _, ws := range list {
		apps, err := s.templateApps(r, ws, cache)
		if err != nil {
			return err
		}
		out = append(out, s.workspaceView(ws, apps))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lookupWorkspace finds the workspace named by the {owner}/{name} path, as
// u may see it. Workspaces u may not access are reported as not found, so
// that their existence does not leak.
func (s *Server) lookupWorkspace(r *http.Request, u store.User) (store.Workspace, error) {
	return s.lookupWorkspaceNamed(r.Context(), u, r.PathValue("owner"), r.PathValue("name"))
}

// lookupWorkspaceNamed is lookupWorkspace for names from elsewhere.
func (s *Server) lookupWorkspaceNamed(ctx context.Context, u store.User, ownerName, name string) (store.Workspace, error) {
	notFound := tether.Errorf(tether.ENOTFOUND, "workspace %s/%s not found: `tether list` shows the ones you can reach", ownerName, name)
	if ownerName == "me" || ownerName == u.Username {
		notFound = tether.Errorf(tether.ENOTFOUND, "workspace %s not found: `tether list` shows yours, `tether create %s` makes it", name, name)
	}
	owner := u
	if ownerName != "me" && ownerName != u.Username {
		if u.Role != tether.RoleAdmin {
			return store.Workspace{}, notFound
		}
		o, err := s.store.UserByLogin(ctx, ownerName)
		if errors.Is(err, store.ErrNotFound) {
			return store.Workspace{}, notFound
		} else if err != nil {
			return store.Workspace{}, err
		}
		owner = o
	}
	ws, err := s.store.WorkspaceByOwnerAndName(ctx, owner.ID, name)
	if errors.Is(err, store.ErrNotFound) {
		return ws, notFound
	} else if err != nil {
		return ws, err
	}
	if !canAccess(u, ws) {
		return store.Workspace{}, notFound
	}
	return ws, nil
}

func (s *Server) getWorkspace(w http.ResponseWriter, r *http.Request, u store.User) error {
	ws, err := s.lookupWorkspace(r, u)
	if err != nil {
		return err
	}
	apps, err := s.templateApps(r, ws, map[uuid.UUID][]tether.App{})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.workspaceView(ws, apps))
	return nil
}

func (s *Server) postWorkspace(w http.ResponseWriter, r *http.Request, u store.User) error {
	var req tether.CreateWorkspaceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := tether.ValidateName("workspace", req.Name); err != nil {
		return err
	}
	ws := store.Workspace{ID: uuid.New(), Name: req.Name, OwnerID: u.ID, Owner: u.Username, CreatedAt: s.now()}
	agentURL := s.accessURL.String()
	var apps []tether.App
	if req.Template != "" {
		t, err := s.store.TemplateByName(r.Context(), req.Template)
		if err != nil {
			return storeError(err, "template "+req.Template)
		}
		ws.TemplateID, ws.Template, apps = t.ID, t.Name, t.Apps
		if t.AgentURL != "" {
			agentURL = t.AgentURL
		}
	}
	token := newToken()
	ws.AgentTokenHash = store.HashToken(token)
	if err := s.store.CreateWorkspace(r.Context(), ws, s.maxWorkspaces); errors.Is(err, store.ErrLimit) {
		return tether.Errorf(tether.EFORBIDDEN, "you have %d workspaces, the most this server allows each user: delete one (`tether delete NAME`), or ask an admin to raise --max-workspaces-per-user", s.maxWorkspaces)
	} else if err != nil {
		return storeError(err, "workspace "+req.Name)
	}
	writeJSON(w, http.StatusCreated, tether.CreateWorkspaceResponse{
		Workspace:      s.workspaceView(ws, apps),
		AgentToken:     token,
		AgentURL:       agentURL,
		InstallCommand: InstallCommand(agentURL, token),
	})
	return nil
}

func (s *Server) deleteWorkspace(w http.ResponseWriter, r *http.Request, u store.User) error {
	ws, err := s.lookupWorkspace(r, u)
	if err != nil {
		return err
	}
	if err := s.store.DeleteWorkspace(r.Context(), ws.ID); err != nil {
		return storeError(err, "workspace "+ws.Name)
	}
	s.forgetWorkspace(ws.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// forgetWorkspace lets go of a deleted workspace: its agent is
// disconnected, and what the server kept about it dropped.
func (s *Server) forgetWorkspace(id uuid.UUID) {
	s.disconnectAgent(id, "workspace deleted")
	s.appHealth.forget(id)
	s.connections.set(id, nil)
}
