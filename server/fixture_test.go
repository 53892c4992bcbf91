package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/sqlite"
	"golang.org/x/crypto/bcrypt"
	"tailscale.com/tailcfg"
)

// The fixture's deployment: the dashboard at accessHost, subdomain apps
// under *.apps.example.com, same-site with it as in issue 10.
const (
	accessHost   = "tether.example.com"
	wildcardHost = "*.apps.example.com"
)

// clock is a settable time for the server under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fixture is a Server on a real listener, with a SQLite store holding an
// admin (alice), the owner of workspace dev (bob, a member), another member
// (carol), and a template whose apps cover every kind.
type fixture struct {
	t      testing.TB
	s      *Server
	db     store.Store
	hs     *httptest.Server
	access *url.URL
	clock  *clock

	admin, owner, other store.User
	ws                  store.Workspace
	agentToken          string
	proxyToken          string // of the proxy addProxy made, if any
	seq                 atomic.Int64
	added               atomic.Int64 // workspaces added by addWorkspace
	addedUsers          atomic.Int64 // users added by addUser
}

// Passwords of the fixture's users.
const (
	adminPassword = "alice-password"
	ownerPassword = "bob-password"
	otherPassword = "carol-password"
)

// The fixture template's apps.
var fixtureApps = []tether.App{
	{Name: "web", URL: "http://127.0.0.1:1", Share: tether.ShareOwner},
	{Name: "pubpath", URL: "http://127.0.0.1:1", Share: tether.SharePublic},
	{Name: "sub", URL: "http://127.0.0.1:1", Subdomain: true, Share: tether.ShareOwner},
	{Name: "auth", URL: "http://127.0.0.1:1", Subdomain: true, Share: tether.ShareAuthenticated},
	{Name: "pub", URL: "http://127.0.0.1:1", Subdomain: true, Share: tether.SharePublic},
}

type fixtureOptions struct {
	scheme string // of the access URL; "http" by default
	derp   http.Handler
	site   http.Handler
	edit   func(*Options)
}

func newFixture(t testing.TB, fo fixtureOptions) *fixture {
	t.Helper()
	if fo.scheme == "" {
		fo.scheme = "http"
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, db: db, clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	f.access = &url.URL{Scheme: fo.scheme, Host: accessHost}
	opts := Options{
		Store:             db,
		AccessURL:         f.access,
		Now:               f.clock.Now,
		DERPMap:           &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}},
		WildcardAccessURL: wildcardHost,
		DERP:              fo.derp,
		Site:              fo.site,
	}
	if fo.edit != nil {
		fo.edit(&opts)
	}
	co := coordinator.New(coordinator.Options{DERPMap: opts.DERPMap})
	opts.Coordinator = co
	f.s, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.hs = httptest.NewServer(f.s.Handler())
	t.Cleanup(func() {
		f.hs.Close()
		f.s.Close()
		co.Close()
		db.Close()
	})

	f.admin = f.addUser("alice", tether.RoleAdmin, adminPassword)
	f.owner = f.addUser("bob", tether.RoleMember, ownerPassword)
	f.other = f.addUser("carol", tether.RoleMember, otherPassword)
	tmpl, err := db.UpsertTemplate(ctx, store.Template{ID: uuid.New(), Name: "apps", Apps: fixtureApps, CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	f.ws, f.agentToken = f.addWorkspace(f.owner, "dev", tmpl.ID)
	return f
}

// addUser stores a user with a cheap password hash.
func (f *fixture) addUser(name string, role tether.Role, password string) store.User {
	f.t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		f.t.Fatal(err)
	}
	u := store.User{User: tether.User{ID: uuid.New(), Username: name, Email: name + "@example.com", Role: role, CreatedAt: f.clock.Now()},
		PasswordHash: hash}
	if err := f.db.CreateUser(context.Background(), u); err != nil {
		f.t.Fatal(err)
	}
	f.addedUsers.Add(1)
	return u
}

// addWorkspace stores a workspace of owner's and returns it with its agent
// token.
func (f *fixture) addWorkspace(owner store.User, name string, template uuid.UUID) (store.Workspace, string) {
	f.t.Helper()
	token := newToken()
	ws := store.Workspace{ID: uuid.New(), Name: name, OwnerID: owner.ID, Owner: owner.Username, TemplateID: template,
		AgentTokenHash: store.HashToken(token), CreatedAt: f.clock.Now()}
	if err := f.db.CreateWorkspace(context.Background(), ws, 0); err != nil {
		f.t.Fatal(err)
	}
	f.added.Add(1)
	ws, err := f.db.WorkspaceByID(context.Background(), ws.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	return ws, token
}

// session signs u in for lifetime (negative: already expired) and returns
// the token.
func (f *fixture) session(u store.User, lifetime time.Duration) string {
	f.t.Helper()
	token := newToken()
	now := f.clock.Now()
	err := f.db.CreateSession(context.Background(), store.Session{TokenHash: store.HashToken(token), UserID: u.ID,
		CreatedAt: now.Add(min(lifetime, 0) - time.Hour), ExpiresAt: now.Add(lifetime)})
	if err != nil {
		f.t.Fatal(err)
	}
	return token
}

// apiToken creates an API token of u's named name, valid for lifetime
// (negative: already expired), and returns its secret.
func (f *fixture) apiToken(u store.User, name string, lifetime time.Duration) string {
	f.t.Helper()
	secret := newAPIToken()
	now := f.clock.Now()
	err := f.db.CreateAPIToken(context.Background(), store.APIToken{ID: uuid.New(), Name: name, TokenHash: store.HashToken(secret),
		UserID: u.ID, CreatedAt: now.Add(min(lifetime, 0) - time.Hour), ExpiresAt: now.Add(lifetime)})
	if err != nil {
		f.t.Fatal(err)
	}
	return secret
}

// name returns a fresh name with a prefix.
func (f *fixture) name(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, f.seq.Add(1))
}

// req is a request to the fixture's server, for the dashboard's host
// unless host says otherwise.
type req struct {
	method, path, host string
	body               string
	header             http.Header
	cookies            []*http.Cookie
	websocket          bool
}

// do sends r and returns the response with its body read.
func (f *fixture) do(r req) (*http.Response, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, f.hs.URL+r.path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	hr.Host = accessHost
	if r.host != "" {
		hr.Host = r.host
	}
	for k, vs := range r.header {
		hr.Header[k] = vs
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}
	if r.websocket {
		key := make([]byte, 16)
		rand.Read(key)
		hr.Header.Set("Connection", "Upgrade")
		hr.Header.Set("Upgrade", "websocket")
		hr.Header.Set("Sec-WebSocket-Version", "13")
		hr.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(hr)
	if err != nil {
		f.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, "" // a WebSocket: closing it ends the server's side
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("%s %s: read body: %v", r.method, r.path, err)
	}
	return resp, string(b)
}

// proxyHost is where the fixture's workspace proxy says it is.
const proxyHost = "edge.example.com"

// addProxy registers a workspace proxy, healthy by the fixture's clock
// (its last heartbeat is now), and returns its token.
func (f *fixture) addProxy(name string) (store.WorkspaceProxy, string) {
	f.t.Helper()
	ctx := context.Background()
	token := newToken()
	p, err := f.db.CreateWorkspaceProxy(ctx, store.WorkspaceProxy{ID: uuid.New(), Name: name, DisplayName: name,
		TokenHash: store.HashToken(token), CreatedAt: f.clock.Now()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.db.WorkspaceProxyHeartbeat(ctx, p.ID, store.ProxyHeartbeat{URL: "http://" + proxyHost, Version: "v", At: f.clock.Now()}); err != nil {
		f.t.Fatal(err)
	}
	f.s.refreshProxies(ctx)
	p.URL = "http://" + proxyHost
	return p, token
}
