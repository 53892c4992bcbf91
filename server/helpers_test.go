package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/sqlite"
	"tailscale.com/tailcfg"
)

// testTimeout bounds each test's waits; tests wait on conditions, never
// for this long unless something is wrong.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a log sink that tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// testServer is a Server on a fresh SQLite store behind httptest.
type testServer struct {
	t     *testing.T
	srv   *Server
	store store.Store
	http  *httptest.Server
	logs  *syncBuffer
}

// newTestServer starts a server; wrap, if not nil, wraps its store (to
// inject failures).
func newTestServer(t *testing.T, opts Options, wrap func(store.Store) store.Store) *testServer {
	t.Helper()
	db, err := sqlite.Open(testContext(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var st store.Store = db
	if wrap != nil {
		st = wrap(db)
	}
	logs := &syncBuffer{}
	ts := &testServer{t: t, store: st, logs: logs}
	ts.http = httptest.NewUnstartedServer(nil)
	ts.http.Start()
	u, _ := url.Parse(ts.http.URL)
	opts.Store, opts.AccessURL = st, u
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if opts.DERPMap == nil {
		opts.DERPMap = &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}
	}
	co := opts.Coordinator
	if co == nil {
		co = coordinator.New(coordinator.Options{DERPMap: opts.DERPMap})
		opts.Coordinator = co
	}
	ts.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.http.Config.Handler = ts.srv.Handler()
	t.Cleanup(func() {
		ts.http.CloseClientConnections()
		ts.http.Close()
		ts.srv.Close()
		co.Close()
	})
	return ts
}

// call sends a request with a session token (if any) and a JSON body (if
// not nil), and decodes a JSON answer into out (if not nil).
func (ts *testServer) call(token, method, path string, body, out any) (int, http.Header, string) {
	ts.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			ts.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(testContext(ts.t), method, ts.http.URL+path, rd)
	if err != nil {
		ts.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set(tether.SessionTokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			ts.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
	return resp.StatusCode, resp.Header, string(b)
}

// must is call that must answer want.
func (ts *testServer) must(want int, token, method, path string, body, out any) string {
	ts.t.Helper()
	code, _, b := ts.call(token, method, path, body, out)
	if code != want {
		ts.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// firstAdmin creates the first admin and returns their session token.
func (ts *testServer) firstAdmin(name string) string {
	ts.t.Helper()
	var resp tether.LoginResponse
	ts.must(http.StatusCreated, "", "POST", "/api/v2/users/first",
		tether.CreateFirstUserRequest{Username: name, Email: name + "@example.com", Password: name + "-secret-pw"}, &resp)
	return resp.SessionToken
}

// addUser has the admin create a user, and signs them in.
func (ts *testServer) addUser(adminToken, name string, role tether.Role) string {
	ts.t.Helper()
	ts.must(http.StatusCreated, adminToken, "POST", "/api/v2/users",
		tether.CreateUserRequest{Username: name, Email: name + "@example.com", Password: name + "-secret-pw", Role: role}, nil)
	return ts.login(name, name+"-secret-pw")
}

func (ts *testServer) login(name, pw string) string {
	ts.t.Helper()
	var resp tether.LoginResponse
	ts.must(http.StatusOK, "", "POST", "/api/v2/users/login", tether.LoginRequest{Login: name, Password: pw}, &resp)
	return resp.SessionToken
}

// wantError checks an error answer's status and that its message says
// something.
func wantError(t *testing.T, code int, body string, status int, says string) {
	t.Helper()
	var e tether.ErrorResponse
	if code != status || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Message, says) {
		t.Errorf("got %d %s; want %d saying %q", code, body, status, says)
	}
}
