package server

import (
	"io"
	"mime"
	"net/http"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/templatefile"
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

// isYAML reports whether a Content-Type names YAML.
func isYAML(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml":
		return true
	}
	return false
}

// postTemplate creates or replaces a template, sent as JSON
// (tether.PushTemplateRequest, as the CLI does) or as a YAML template file
// (Content-Type: application/yaml, as the dashboard does).
func (s *Server) postTemplate(w http.ResponseWriter, r *http.Request, u store.User) error {
	if u.Role != tether.RoleAdmin {
		return errAdminOnly
	}
	var req tether.PushTemplateRequest
	if isYAML(r.Header.Get("Content-Type")) {
		// The dashboard uploads the file as it is, and the answer names
		// the line at fault, as `tether templates push` does.
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, templatefile.MaxSize))
		if err != nil {
			return tether.Errorf(tether.ETOOLARGE, "the template is larger than %d bytes", templatefile.MaxSize)
		}
		if req, err = templatefile.Parse("file", b); err != nil {
			return tether.Errorf(tether.EINVALID, "%s", err)
		}
	} else {
		if err := decodeJSON(w, r, &req); err != nil {
			return err
		}
		if err := req.Validate(); err != nil {
			return err
		}
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
