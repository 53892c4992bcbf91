package server

import (
	"net/http"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

func (s *Server) getTemplates(w http.ResponseWriter, r *http.Request, u store.User) error {
	ts, err := s.store.ListTemplates(r.Context())
	if err != nil {
		return err
	}
	if ts == nil {
		ts = []store.Template{}
	}
	writeJSON(w, http.StatusOK, ts)
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request, u store.User) error {
	name := r.PathValue("name")
	t, err := s.store.TemplateByName(r.Context(), name)
	if err != nil {
		return storeError(err, "template "+name)
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *Server) postTemplate(w http.ResponseWriter, r *http.Request, u store.User) error {
	if u.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.PushTemplateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if req.Apps == nil {
		req.Apps = []tether.App{}
	}
	now := s.now()
	t, err := s.store.UpsertTemplate(r.Context(), store.Template{
		ID: uuid.New(), Name: req.Name, AgentURL: req.AgentURL, Apps: req.Apps,
		StartupScript: req.StartupScript, StartupScriptTimeout: req.StartupScriptTimeout,
		CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}
