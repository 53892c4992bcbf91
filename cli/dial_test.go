package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/config"
	"github.com/tetherdev/tether/coordinator/coordclient"
)

// dialTestTimeout bounds each dial test; waitForOrder is how long the fake
// server holds an answer back for something that should come first. Old
// code that waits for the answer before doing that thing fails after it.
const (
	dialTestTimeout = 30 * time.Second
	waitForOrder    = 10 * time.Second
)

// fakeDeployment is an API server for dialWorkspace: the workspace
// lookup, the connection info and the coordination WebSocket, each
// answering when the test's hooks say. The coordination ends with
// tether.CloseAccessRevoked once a node came, which ends dialWorkspace
// with that error: no agent is needed to see what happened first.
type fakeDeployment struct {
	t   *testing.T
	srv *httptest.Server
	ws  tether.Workspace

	info tether.ConnectionInfo
	// beforeInfo and beforeWorkspace run before those answers.
	beforeInfo, beforeWorkspace func() error

	coordArrived chan struct{} // closed when the first coordination request comes
	nodeArrived  chan struct{} // closed when the first node comes
	arriveOnce   sync.Once
	nodeOnce     sync.Once
	coordDials   atomic.Int32
	mu           sync.Mutex
	nodes        []*tether.Node // guarded by mu; the first node of each coordination
}

func newFakeDeployment(t *testing.T) *fakeDeployment {
	f := &fakeDeployment{
		t:            t,
		ws:           tether.Workspace{ID: uuid.New(), Name: "dev", Owner: "alice", AgentStatus: tether.AgentConnected},
		info:         tether.ConnectionInfo{DERPMap: &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}},
		coordArrived: make(chan struct{}),
		nodeArrived:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v2/workspaces/me/dev", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, f.beforeWorkspace, f.ws)
	})
	mux.HandleFunc("GET /api/v2/connection-info", func(w http.ResponseWriter, r *http.Request) {
		f.answer(w, f.beforeInfo, f.info)
	})
	// The server takes the owner's name or "me".
	mux.HandleFunc("GET /api/v2/workspaces/me/dev/coordinate", f.coordinate)
	mux.HandleFunc("GET /api/v2/workspaces/alice/dev/coordinate", f.coordinate)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeDeployment) answer(w http.ResponseWriter, before func() error, v any) {
	if before != nil {
		if err := before(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(tether.ErrorResponse{Message: err.Error(), Code: tether.EUNAVAILABLE})
			return
		}
	}
	json.NewEncoder(w).Encode(v)
}

func (f *fakeDeployment) coordinate(w http.ResponseWriter, r *http.Request) {
	f.coordDials.Add(1)
	f.arriveOnce.Do(func() { close(f.coordArrived) })
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), dialTestTimeout)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		var req tether.CoordinateRequest
		if json.Unmarshal(b, &req) != nil || req.Node == nil {
			continue
		}
		f.mu.Lock()
		f.nodes = append(f.nodes, req.Node)
		f.mu.Unlock()
		f.nodeOnce.Do(func() { close(f.nodeArrived) })
		if f.coordDials.Load() >= f.revokeAt() {
			c.Close(tether.CloseAccessRevoked, "test over")
			return
		}
		// Otherwise wait for the client to leave.
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}
}

// revokeAt is the coordination dial whose node ends the test: the first,
// unless the test expects the tunnel to start over.
func (f *fakeDeployment) revokeAt() int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.info.DisableDirect {
		return 2
	}
	return 1
}

// waitFor returns a hook that waits for ch, failing with msg if it does
// not close within waitForOrder.
func waitFor(ch <-chan struct{}, msg string) func() error {
	return func() error {
		select {
		case <-ch:
			return nil
		case <-time.After(waitForOrder):
			return errors.New(msg)
		}
	}
}

// dial runs dialWorkspace against the fake, with the config directory
// dir, and returns its error (it never reaches an agent).
func (f *fakeDeployment) dial(dir string) error {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dialTestTimeout)
	defer cancel()
	r := &root{
		env:          &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }},
		start:        time.Now(),
		url:          f.srv.URL,
		sessionToken: "token",
		configDir:    dir,
	}
	t, err := r.dialWorkspace(ctx, "dev", tunnelFlags{logLevel: "error"})
	if err == nil {
		t.stop()
		f.t.Fatal("dialWorkspace succeeded without an agent")
	}
	return err
}

func wantRevoked(t *testing.T, err error) {
	t.Helper()
	var revoked *coordclient.AccessRevokedError
	if !errors.As(err, &revoked) {
		t.Fatalf("dialWorkspace = %v; want the coordination's end (the order of the steps is wrong)", err)
	}
}

// TestDialStartsAtOnce: the coordination WebSocket is dialed without
// waiting for the workspace lookup or the connection info, each a round
// trip to the server. The fake answers neither until coordination has
// started.
func TestDialStartsAtOnce(t *testing.T) {
	f := newFakeDeployment(t)
	f.beforeWorkspace = waitFor(f.coordArrived, "workspace looked up before coordination started")
	f.beforeInfo = waitFor(f.coordArrived, "connection info asked before coordination started")
	wantRevoked(t, f.dial(t.TempDir()))
}

// TestDialSavedConnectionInfo: the tunnel starts with the connection info
// saved by the previous command (its node reaches the coordinator before
// the server has answered for the info), and a saved info that differs
// from the server's is replaced, the tunnel started over with the
// server's.
func TestDialSavedConnectionInfo(t *testing.T) {
	t.Run("saved and used", func(t *testing.T) {
		f := newFakeDeployment(t)
		dir := t.TempDir()
		wantRevoked(t, f.dial(dir))
		if _, ok := config.Dir(dir).ConnectionInfo(f.srv.URL); !ok {
			t.Fatal("the connection info was not saved")
		}
		f2 := newFakeDeployment(t)
		f2.info = f.info
		f2.beforeInfo = waitFor(f2.nodeArrived, "connection info awaited before the tunnel started")
		if err := config.Dir(dir).SaveConnectionInfo(f2.srv.URL, f.info); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, f2.dial(dir))
	})
	t.Run("stale", func(t *testing.T) {
		f := newFakeDeployment(t)
		dir := t.TempDir()
		// Saved: direct allowed. The server's: direct blocked.
		if err := config.Dir(dir).SaveConnectionInfo(f.srv.URL, f.info); err != nil {
			t.Fatal(err)
		}
		f.info.DisableDirect = true
		wantRevoked(t, f.dial(dir))
		if n := f.coordDials.Load(); n != 2 {
			t.Errorf("%d coordination dials; want 2 (the tunnel started over)", n)
		}
		f.mu.Lock()
		last := f.nodes[len(f.nodes)-1]
		f.mu.Unlock()
		if len(last.Endpoints) != 0 {
			t.Errorf("the tunnel started over with the server's info still publishes endpoints %v", last.Endpoints)
		}
		if got, ok := config.Dir(dir).ConnectionInfo(f.srv.URL); !ok || !got.DisableDirect {
			t.Errorf("saved connection info %+v (%v); want the server's", got, ok)
		}
	})
}
