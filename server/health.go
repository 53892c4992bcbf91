package server

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/server/healthcheck"
	"github.com/tetherdev/tether/store"
)

// healthCacheFor is how long a health report is reused, so that a busy
// dashboard does not run the checks (relay connections, STUN probes) on
// every poll.
const healthCacheFor = 10 * time.Second

// healthCache runs the checks at most once per healthCacheFor.
type healthCache struct {
	mu     sync.Mutex
	report *tether.HealthReport
	at     time.Time
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request, u store.User) error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	if s.health.report == nil || time.Since(s.health.at) > healthCacheFor || r.URL.Query().Has("force") {
		rep := healthcheck.Run(r.Context(), healthcheck.Options{
			AccessURL:     s.accessURL,
			DERPMap:       s.derpMap(),
			DERPPlainHTTP: s.accessURL.Scheme == "http",
			Store: func(ctx context.Context) error {
				_, err := s.store.CountUsers(ctx)
				return err
			},
			Replicas:     s.replicas,
			SelfRelayURL: s.selfRelayURL,
			OwnRegionID:  s.derpRegionID,
			MeshKey:      s.derpMeshKey,
			UDPRelay:     s.udpRelayCheck,
			Proxies:      s.healthProxies,
		})
		s.health.report, s.health.at = &rep, time.Now()
	}
	writeJSON(w, http.StatusOK, s.health.report)
	return nil
}

// getHealthz is the liveness check for load balancers and orchestrators:
// it answers while the server serves HTTP, to anyone, and says nothing
// more. The detailed report (getHealth) is for signed-in users.
func getHealthz(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	_, err := io.WriteString(w, "ok\n")
	return err
}
