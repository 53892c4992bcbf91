package server

import (
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// A template's startup script runs in each workspace once its agent has
// connected (agent/startup.go). The agent reports how it goes, with the
// end of its output, when it starts, as the output grows and when it ends;
// the server keeps the last report in the store, shows its status in the
// workspace (tether list, the dashboard) and the output to those who may
// see the workspace: its owner and admins.

// maxStartupLogPath bounds the log file's path an agent reports.
const maxStartupLogPath = 4096

// postStartupScript is the agent reporting on its startup script.
func (s *Server) postStartupScript(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	var req tether.StartupScriptResult
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	switch {
	case !req.Valid():
		return tether.Errorf(tether.EINVALID, "startup script status %.20q is not running, succeeded, failed or timed_out with a matching exit code and finish time", req.Status)
	case len(req.Output) > tether.MaxStartupScriptOutput || !utf8.ValidString(req.Output):
		return tether.Errorf(tether.EINVALID, "startup script output must be UTF-8 text of at most %d bytes", tether.MaxStartupScriptOutput)
	case len(req.LogPath) > maxStartupLogPath:
		return tether.Errorf(tether.EINVALID, "startup script log path is longer than %d bytes", maxStartupLogPath)
	case req.StartedAt.IsZero() || req.FinishedAt != nil && req.FinishedAt.Before(req.StartedAt):
		return tether.Errorf(tether.EINVALID, "startup script times are out of order")
	}
	req.StartedAt = req.StartedAt.UTC().Truncate(time.Microsecond)
	if req.FinishedAt != nil {
		f := req.FinishedAt.UTC().Truncate(time.Microsecond)
		req.FinishedAt = &f
	}
	if err := s.store.SetStartupScript(r.Context(), ws.ID, req); err != nil {
		return storeError(err, "workspace "+ws.Name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getStartupScript is a workspace's last startup script result, with its
// output, for those who may see the workspace.
func (s *Server) getStartupScript(w http.ResponseWriter, r *http.Request, u store.User) error {
	ws, err := s.lookupWorkspace(r, u)
	if err != nil {
		return err
	}
	if ws.StartupScript == nil {
		return tether.Errorf(tether.ENOTFOUND, "the agent of %s/%s has not run a startup script: its template has none, or the agent has not connected since it got one", ws.Owner, ws.Name)
	}
	writeJSON(w, http.StatusOK, ws.StartupScript)
	return nil
}
