package servercmd

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/server"
	"github.com/tetherdev/tether/store"
	"github.com/tetherdev/tether/store/sqlite"
)

// apiServer is a control plane on httptest with its store, as --dev finds
// it once the server is up.
type apiServer struct {
	url   *url.URL
	store store.Store
}

func startAPI(t *testing.T) *apiServer {
	t.Helper()
	db, err := sqlite.Open(testContext(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	u, _ := url.Parse("http://" + hs.Listener.Addr().String())
	derpMap := &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{}}
	co := coordinator.New(coordinator.Options{DERPMap: derpMap})
	srv, err := server.New(server.Options{Store: db, AccessURL: u, DERPMap: derpMap, Coordinator: co})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv.Handler()
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		srv.Close()
		co.Close()
		db.Close()
	})
	return &apiServer{url: u, store: db}
}

// TestDevReusesItsDataDir: --dev creates its admin on a fresh data
// directory and keeps the password there; started again on the same
// directory it signs in with it and renews the dev workspace's agent
// token; it refuses a directory whose deployment it did not create.
func TestDevReusesItsDataDir(t *testing.T) {
	ctx := testContext(t)
	if got := defaultDataDir(true); got != ".tether-dev" {
		t.Errorf("--dev's default data dir is %q, want .tether-dev", got)
	}
	api := startAPI(t)
	dir := t.TempDir()

	first := &client.Client{URL: api.url}
	password, err := devSignIn(ctx, first, dir)
	if err != nil {
		t.Fatal(err)
	}
	if first.SessionToken == "" || len(password) < 12 {
		t.Fatalf("first start: session %q, password %q", first.SessionToken, password)
	}
	fi, err := os.Stat(filepath.Join(dir, devPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the password file has mode %v, want 0600", fi.Mode().Perm())
	}
	token1, err := devWorkspaceToken(ctx, first, api.store)
	if err != nil {
		t.Fatal(err)
	}

	// Started again on the same directory.
	again := &client.Client{URL: api.url}
	password2, err := devSignIn(ctx, again, dir)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if password2 != password {
		t.Errorf("second start printed password %q, want the first's %q", password2, password)
	}
	if me, err := again.Me(ctx); err != nil || me.Username != devAdmin {
		t.Fatalf("signed in again as %q (%v), want %s", me.Username, err, devAdmin)
	}
	token2, err := devWorkspaceToken(ctx, again, api.store)
	if err != nil {
		t.Fatalf("second start's workspace: %v", err)
	}
	if token2 == token1 {
		t.Fatal("the agent token was not renewed")
	}
	ws, err := api.store.WorkspaceByAgentTokenHash(ctx, store.HashToken(token2))
	if err != nil || ws.Name != devWorkspace {
		t.Errorf("the renewed token opens %q (%v), want the %s workspace", ws.Name, err, devWorkspace)
	}
	if _, err := api.store.WorkspaceByAgentTokenHash(ctx, store.HashToken(token1)); err == nil {
		t.Error("the old agent token still opens the workspace")
	}
	if list, err := again.Workspaces(ctx, true); err != nil || len(list) != 1 {
		t.Errorf("%d workspaces (%v), want the one dev workspace", len(list), err)
	}

	// Another directory on the same deployment: not ours.
	other := t.TempDir()
	_, err = devSignIn(ctx, &client.Client{URL: api.url}, other)
	if err == nil || !strings.Contains(err.Error(), "holds a deployment that --dev did not create; use another --data-dir") {
		t.Errorf("a deployment --dev did not create: %v", err)
	}

	// A password file that no longer matches.
	if err := os.WriteFile(filepath.Join(other, devPasswordFile), []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = devSignIn(ctx, &client.Client{URL: api.url}, other)
	if err == nil || !strings.Contains(err.Error(), "sign in as "+devAdmin) {
		t.Errorf("a stale password file: %v", err)
	}
}
