package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
)

func TestDuplicateRetry(t *testing.T) {
	for _, tt := range []struct {
		refusals int
		want     time.Duration
	}{
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{4, 30 * time.Second},
		{100, 30 * time.Second},
	} {
		if got := duplicateRetry(tt.refusals); got != tt.want {
			t.Errorf("duplicateRetry(%d) = %v, want %v", tt.refusals, got, tt.want)
		}
	}
}

// TestFetchManifest checks how the agent asks who it is: it retries while
// the server is unavailable, and gives up at once when its token is
// refused or when its context ends.
func TestFetchManifest(t *testing.T) {
	want := tether.AgentManifest{WorkspaceID: uuid.New(), WorkspaceName: "dev", Owner: "alice"}
	for _, tc := range []struct {
		name     string
		statuses []int // answered in turn; then the manifest
		stop     bool  // the context ends while the server is unavailable
		wantErr  string
		wantReqs int32
	}{
		{name: "available", wantReqs: 1},
		{name: "unavailable, then back", statuses: []int{http.StatusServiceUnavailable, http.StatusBadGateway}, wantReqs: 3},
		{name: "token refused", statuses: []int{http.StatusUnauthorized}, wantErr: "server refused the agent", wantReqs: 1},
		{name: "forbidden", statuses: []int{http.StatusForbidden}, wantErr: "server refused the agent", wantReqs: 1},
		{name: "stopped while unavailable", statuses: []int{http.StatusServiceUnavailable}, stop: true, wantReqs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			var reqs atomic.Int32
			a := newAgent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v2/agent/manifest" || r.Header.Get(tether.AgentTokenHeader) != "agent-token" {
					t.Errorf("request %s %s with agent token %q", r.Method, r.URL.Path, r.Header.Get(tether.AgentTokenHeader))
				}
				i := int(reqs.Add(1)) - 1
				if i < len(tc.statuses) {
					if tc.stop {
						cancel()
					}
					http.Error(w, http.StatusText(tc.statuses[i]), tc.statuses[i])
					return
				}
				json.NewEncoder(w).Encode(want)
			}))
			m, err := a.fetchManifest(ctx)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("fetchManifest error = %v, want %q", err, tc.wantErr)
				}
			case err != nil:
				t.Errorf("fetchManifest = %v", err)
			case !tc.stop && m.WorkspaceID != want.WorkspaceID:
				t.Errorf("manifest = %+v, want %+v", m, want)
			}
			if n := reqs.Load(); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
			if tc.stop && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Error("fetchManifest returned only at the test's deadline")
			}
		})
	}
}
