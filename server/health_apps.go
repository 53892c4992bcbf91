package server

import (
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// appHealth holds what agents last reported about their apps' health. It is
// in memory: an agent reports again whenever it reconnects.
type appHealth struct {
	mu   sync.Mutex
	byWS map[uuid.UUID]map[string]string
}

func (h *appHealth) set(ws uuid.UUID, apps map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byWS == nil {
		h.byWS = map[uuid.UUID]map[string]string{}
	}
	h.byWS[ws] = apps
}

func (h *appHealth) forget(ws uuid.UUID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.byWS, ws)
}

// view returns apps with their health: "disabled" without a health check,
// "initializing" until the agent says otherwise.
func (h *appHealth) view(ws uuid.UUID, apps []tether.App) []tether.WorkspaceApp {
	h.mu.Lock()
	reported := h.byWS[ws]
	h.mu.Unlock()
	out := make([]tether.WorkspaceApp, 0, len(apps))
	for _, a := range apps {
		health := tether.AppHealthDisabled
		if a.Healthcheck != nil {
			health = tether.AppHealthInitializing
			if v, ok := reported[a.Name]; ok {
				health = v
			}
		}
		out = append(out, tether.WorkspaceApp{App: a, Health: health})
	}
	return out
}

// maxReportedApps bounds an agent's report.
const maxReportedApps = 256

func (s *Server) postAppHealth(w http.ResponseWriter, r *http.Request, ws store.Workspace) error {
	var req tether.AppHealthReport
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if len(req.Apps) > maxReportedApps {
		return tether.Errorf(tether.EINVALID, "report has %d apps, more than %d", len(req.Apps), maxReportedApps)
	}
	for name, v := range req.Apps {
		switch v {
		case tether.AppHealthHealthy, tether.AppHealthUnhealthy, tether.AppHealthInitializing, tether.AppHealthDisabled:
		default:
			return tether.Errorf(tether.EINVALID, "app %.40q: health %.40q is not one of healthy, unhealthy, initializing, disabled", name, v)
		}
	}
	s.appHealth.set(ws.ID, req.Apps)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
