package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

func TestLogin(t *testing.T) {
	srv := here.StartServer(t)
	u := here.NewUser(t)

	stderr := u.Fails("login", srv.URL)
	if !strings.Contains(stderr, "no users yet") || !strings.Contains(stderr, "--first-user-username") {
		t.Errorf("login on a new server without flags: %q; want a hint to create the first user", stderr)
	}
	out := u.Must("login", srv.URL, "--first-user-username", "alice", "--first-user-email", "alice@example.com", "--first-user-password", "correct-horse")
	if !strings.Contains(out, "as alice (admin)") {
		t.Errorf("first login printed %q", out)
	}
	if got := u.Must("users", "list"); !strings.Contains(got, "alice") {
		t.Errorf("users list = %q", got)
	}

	other := here.NewUser(t)
	stderr = other.Fails("login", srv.URL, "--username", "alice", "--password", "wrong-password")
	if !strings.Contains(stderr, "incorrect username, email or password") {
		t.Errorf("bad password: %q", stderr)
	}
	stderr = other.Fails("login", srv.URL, "--username", "nobody", "--password", "wrong-password")
	if !strings.Contains(stderr, "incorrect username, email or password") {
		t.Errorf("unknown user: %q (must not reveal whether the user exists)", stderr)
	}
	other.Fails("list") // not logged in
	other.Must("login", srv.URL, "--username", "alice@example.com", "--password", "correct-horse")
	other.Must("list")

	other.Must("logout")
	stderr = other.Fails("list")
	if !strings.Contains(stderr, "tether login") {
		t.Errorf("after logout: %q; want a hint to log in", stderr)
	}
	// The first session is still valid: logout ends only its own.
	u.Must("list")

	stderr = here.NewUser(t).Fails("login", srv.URL, "--first-user-username", "mallory", "--first-user-email", "m@example.com", "--first-user-password", "12345678")
	if !strings.Contains(stderr, "pass --username and --password") {
		t.Errorf("second first-user attempt: %q", stderr)
	}
	code, body := api(t, "POST", srv.URL+"/api/v2/users/first", "", strings.NewReader(`{"username":"mallory","email":"m@example.com","password":"12345678"}`))
	if code != http.StatusConflict {
		t.Errorf("POST /users/first on a set-up server: %d %s", code, body)
	}
}

func TestTemplates(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `name: python-dev
agent_url: https://tether.internal.example.com
apps:
  - name: web
    url: http://127.0.0.1:8080
    subdomain: false
    share: owner
    healthcheck: {url: http://127.0.0.1:8080/healthz, interval: 5s}
  - name: docs
    url: http://127.0.0.1:9000
    share: public
`)
	if out := u.Must("templates", "push", "-f", good); !strings.Contains(out, "python-dev (2 apps)") {
		t.Errorf("push: %q", out)
	}
	var list []struct {
		Name     string `json:"name"`
		AgentURL string `json:"agent_url"`
		Apps     []struct {
			Name        string `json:"name"`
			Share       string `json:"share"`
			Healthcheck *struct {
				Interval  string `json:"interval"`
				Threshold int    `json:"threshold"`
			} `json:"healthcheck"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(u.Must("templates", "list", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].AgentURL != "https://tether.internal.example.com" || len(list[0].Apps) != 2 ||
		list[0].Apps[0].Healthcheck == nil || list[0].Apps[0].Healthcheck.Interval != "5s" || list[0].Apps[0].Healthcheck.Threshold != 3 ||
		list[0].Apps[1].Share != "public" {
		t.Errorf("templates list = %+v", list)
	}

	tests := []struct {
		name, content, want string
	}{
		{"syntax", "name: x\napps: [\n", "line"},
		{"unknown field", "name: x\ncolour: blue\n", "field colour not found"},
		{"bad share", "name: x\napps:\n  - {name: web, url: 'http://127.0.0.1:1', share: everyone}\n", "share \"everyone\" must be owner, authenticated or public"},
		{"bad url", "name: x\napps:\n  - {name: web, url: 'ftp://x'}\n", "must be an http:// or https:// URL"},
		{"bad interval", "name: x\napps:\n  - {name: web, url: 'http://a', healthcheck: {url: 'http://a', interval: soon}}\n", "not a duration"},
		{"bad name", "name: Python_Dev\n", "template name \"Python_Dev\""},
		{"empty", "", "is empty"},
		{"duplicate app", "name: x\napps:\n  - {name: a, url: 'http://a'}\n  - {name: a, url: 'http://b'}\n", "listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stderr := u.Fails("templates", "push", "-f", write(tc.name+".yaml", tc.content))
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr = %q, want it to mention %q", stderr, tc.want)
			}
		})
	}
	if stderr := u.Fails("templates", "push", "-f", filepath.Join(dir, "missing.yaml")); !strings.Contains(stderr, "no such file") {
		t.Errorf("missing file: %q", stderr)
	}

	// A template's agent_url is the URL printed for its workspaces' agents;
	// others get the access URL.
	_, agentURL := u.CreateWorkspace("py", "--template", "python-dev")
	if agentURL != "https://tether.internal.example.com" {
		t.Errorf("agent URL with template override = %q", agentURL)
	}
	_, agentURL = u.CreateWorkspace("plain")
	if agentURL != srv.URL {
		t.Errorf("agent URL without template = %q, want %q", agentURL, srv.URL)
	}
	if stderr := u.Fails("create", "x", "--template", "nope"); !strings.Contains(stderr, "template nope not found") {
		t.Errorf("unknown template: %q", stderr)
	}
	out := u.Must("create", "shown")
	if !strings.Contains(out, "tether agent --url "+srv.URL) || !strings.Contains(out, "TETHER_AGENT_TOKEN=") {
		t.Errorf("create did not print the agent command:\n%s", out)
	}

	m := here.Member(t, srv.URL, u, "bob")
	if stderr := m.Fails("templates", "push", "-f", good); !strings.Contains(stderr, "only admins") {
		t.Errorf("member push: %q", stderr)
	}
}

func TestWorkspaceLifecycle(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)

	for _, bad := range []string{"Dev", "my_ws", "x-", "a--b", strings.Repeat("a", 40)} {
		if stderr := u.Fails("create", bad); !strings.Contains(stderr, "workspace name") {
			t.Errorf("create %q: %q", bad, stderr)
		}
	}
	token, agentURL := u.CreateWorkspace("dev")
	if stderr := u.Fails("create", "dev"); !strings.Contains(stderr, "already exists") {
		t.Errorf("duplicate create: %q", stderr)
	}
	ws := u.Workspaces()
	if len(ws) != 1 || ws[0].Name != "dev" || ws[0].Owner != "alice" || ws[0].AgentStatus != "disconnected" || ws[0].LastSeen != nil {
		t.Fatalf("before the agent runs: %+v", ws)
	}

	agent := here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })
	if ws := u.Workspaces(); ws[0].LastSeen == nil || time.Since(*ws[0].LastSeen) > time.Minute {
		t.Errorf("last_seen of a connected agent = %v", ws[0].LastSeen)
	}
	if out := u.Must("list"); !strings.Contains(out, "alice/dev") || !strings.Contains(out, "connected") {
		t.Errorf("list:\n%s", out)
	}

	agent.Kill()
	harness.WaitFor(t, harness.StatusTimeout, "agent disconnected", func() bool { return u.AgentStatus("dev") == "disconnected" })

	// A second agent with a wrong token gives up with a clear message.
	bad := here.Start(t, "bad agent", []string{"TETHER_AGENT_TOKEN=wrong"}, "agent", "--url", agentURL)
	select {
	case <-bad.Done():
	case <-time.After(harness.StatusTimeout):
		t.Fatal("agent with a wrong token kept running")
	}
	if out := bad.Output(); !strings.Contains(out, "agent token is invalid") {
		t.Errorf("agent with a wrong token said:\n%s", out)
	}

	if stderr := u.Fails("delete", "dev"); !strings.Contains(stderr, "--yes") {
		t.Errorf("delete without --yes and without a terminal: %q", stderr)
	}
	u.Must("delete", "dev", "--yes")
	if ws := u.Workspaces(); len(ws) != 0 {
		t.Errorf("after delete: %+v", ws)
	}
	if stderr := u.Fails("delete", "dev", "--yes"); !strings.Contains(stderr, "not found") {
		t.Errorf("second delete: %q", stderr)
	}
}

func TestServerRestartKeepsDataAndAgentReconnects(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Stop()
	srv = here.StartServerWith(t, harness.ServerOptions{DataDir: srv.DataDir, Addr: addr})

	// The saved session still works, the workspace is still there, and the
	// agent comes back on its own.
	harness.WaitFor(t, harness.StatusTimeout, "agent reconnected", func() bool { return u.AgentStatus("dev") == "connected" })
	if out := u.Must("users", "list"); !strings.Contains(out, "alice") {
		t.Errorf("users after restart: %q", out)
	}
}

func TestAuthorization(t *testing.T) {
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	a := here.Member(t, srv.URL, adm, "anna")
	b := here.Member(t, srv.URL, adm, "boris")
	tokenA, _ := a.CreateWorkspace("ws-a")
	b.CreateWorkspace("ws-b")

	// Members see only their own workspaces; admins see all.
	if ws := a.Workspaces(); len(ws) != 1 || ws[0].Name != "ws-a" {
		t.Errorf("anna sees %+v", ws)
	}
	if ws := adm.Workspaces(); len(ws) != 2 {
		t.Errorf("admin sees %+v", ws)
	}
	if stderr := a.Fails("delete", "boris/ws-b", "--yes"); !strings.Contains(stderr, "not found") {
		t.Errorf("anna deleting boris's workspace: %q", stderr)
	}
	code, body := api(t, "GET", srv.URL+"/api/v2/workspaces/boris/ws-b", a.Token(), nil)
	if code != http.StatusNotFound {
		t.Errorf("anna reading boris's workspace: %d %s", code, body)
	}
	if ws := b.Workspaces(); len(ws) != 1 {
		t.Errorf("boris's workspace is gone: %+v", ws)
	}
	if stderr := a.Fails("users", "create", "--username", "eve", "--email", "e@example.com", "--password", "12345678"); !strings.Contains(stderr, "only admins") {
		t.Errorf("member creating a user: %q", stderr)
	}
	code, _ = api(t, "GET", srv.URL+"/api/v2/users", a.Token(), nil)
	if code != http.StatusForbidden {
		t.Errorf("member listing users: %d", code)
	}
	adm.Must("delete", "boris/ws-b", "--yes")

	// No token, a wrong token, and an agent token on user endpoints all
	// get 401 with a JSON message.
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"none", nil},
		{"wrong session", []string{"Tether-Session-Token", "wrong"}},
		{"agent token as session", []string{"Tether-Session-Token", tokenA}},
		{"agent token in its header", []string{"Tether-Agent-Token", tokenA}},
		{"bearer agent token", []string{"Authorization", "Bearer " + tokenA}},
	} {
		for _, ep := range []string{"/api/v2/workspaces", "/api/v2/users/me", "/api/v2/templates"} {
			code, body := api(t, "GET", srv.URL+ep, "", nil, tc.header...)
			var e struct{ Message string }
			if code != http.StatusUnauthorized || json.Unmarshal(body, &e) != nil || e.Message == "" {
				t.Errorf("%s on %s: %d %s", tc.name, ep, code, body)
			}
		}
	}
	// A session token is no agent token either.
	code, _ = api(t, "GET", srv.URL+"/api/v2/agent/manifest", "", nil, "Tether-Agent-Token", a.Token())
	if code != http.StatusUnauthorized {
		t.Errorf("session token as agent token: %d", code)
	}
	code, _ = api(t, "GET", srv.URL+"/api/v2/agent/manifest", "", nil, "Tether-Agent-Token", tokenA)
	if code != http.StatusOK {
		t.Errorf("agent token on its manifest: %d", code)
	}
}

func TestNoSecretsInPlainText(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	m := here.Member(t, srv.URL, u, "bob")
	agentToken, agentURL := m.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, agentToken)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return m.AgentStatus("dev") == "connected" })
	secrets := map[string]string{
		"admin password":  "correct-horse",
		"member password": "bob-password",
		"admin session":   u.Token(),
		"member session":  m.Token(),
		"agent token":     agentToken,
	}
	srv.Stop() // flush the WAL into the database file
	files, _ := filepath.Glob(filepath.Join(srv.DataDir, "*"))
	if len(files) == 0 {
		t.Fatal("no database files found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for what, secret := range secrets {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s found in plain text in %s", what, f)
			}
		}
		if !bytes.Contains(b, []byte("bob@example.com")) && strings.HasSuffix(f, ".db") {
			t.Errorf("%s does not look like the database (no user email in it)", f)
		}
	}
}

func TestBadInputNeverCrashesServer(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	tok := u.Token()
	huge := strings.NewReader(`{"name":"` + strings.Repeat("a", 2<<20) + `"}`)
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"malformed", "POST", "/api/v2/workspaces", `{"name":`, 400},
		{"not json", "POST", "/api/v2/workspaces", `hello`, 400},
		{"unknown field", "POST", "/api/v2/workspaces", `{"name":"x","colour":"blue"}`, 400},
		{"wrong type", "POST", "/api/v2/workspaces", `{"name":42}`, 400},
		{"empty", "POST", "/api/v2/users", ``, 400},
		{"trailing", "POST", "/api/v2/users/login", `{"login":"a","password":"b"} {}`, 400},
		{"array", "POST", "/api/v2/templates", `[1,2,3]`, 400},
		{"null apps entry", "POST", "/api/v2/templates", `{"name":"t","apps":[null]}`, 400},
		{"nested junk", "POST", "/api/v2/templates", `{"name":"t","apps":[{"name":"a","url":"http://a","healthcheck":{"interval":"-5s","url":"http://a"}}]}`, 400},
		{"bad email", "POST", "/api/v2/users", `{"username":"x","email":"not-an-email","password":"12345678"}`, 400},
		{"short password", "POST", "/api/v2/users", `{"username":"x","email":"x@example.com","password":"123"}`, 400},
		{"bad role", "POST", "/api/v2/users", `{"username":"x","email":"x@example.com","password":"12345678","role":"god"}`, 400},
		{"unknown endpoint", "GET", "/api/v2/nothing", ``, 404},
		{"bad owner path", "GET", "/api/v2/workspaces/%00/x", ``, 404},
		{"coordinate without websocket", "GET", "/api/v2/agent/connect", ``, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := api(t, tc.method, srv.URL+tc.path, tok, strings.NewReader(tc.body), "Content-Type", "application/json")
			var e struct{ Message string }
			if code != tc.want || json.Unmarshal(body, &e) != nil || e.Message == "" {
				t.Errorf("got %d %s, want %d with a JSON message", code, body, tc.want)
			}
		})
	}
	code, body := api(t, "POST", srv.URL+"/api/v2/workspaces", tok, huge, "Content-Type", "application/json")
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %s", code, body)
	}
	// Still alive and well.
	u.Must("list")
}

func TestDevMode(t *testing.T) {
	dir := t.TempDir()
	u := here.NewUser(t)
	p := here.Start(t, "dev server", u.Env, "server", "--dev", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--derp-server-stun-addresses", "127.0.0.1:0")
	p.WaitLine(regexpMust(`^Try:\s+tether list`))
	harness.WaitFor(t, harness.StatusTimeout, "dev agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	// Restarting the demo keeps working: same admin, the agent gets a new token.
	p.Stop()
	p = here.Start(t, "dev server again", u.Env, "server", "--dev", "--http-address", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--derp-server-stun-addresses", "127.0.0.1:0",
		"--prometheus-address", "127.0.0.1:0")
	p.WaitLine(regexpMust(`^Try:\s+tether list`))
	harness.WaitFor(t, harness.StatusTimeout, "dev agent connected after restart", func() bool { return u.AgentStatus("dev") == "connected" })
	if ws := u.Workspaces(); len(ws) != 1 {
		t.Errorf("after restart: %+v", ws)
	}

	// The demo's metrics hold its in-process agent's too.
	m := scrape(t, urlFromLog(t, p, promURLRE))
	if n, _ := metricstest.Series(m, "tether_agent_sessions"); n == 0 {
		t.Error("the dev server's metrics lack its agent's")
	}
	if v := metric(t, m, "tether_agents_connected"); v != 1 {
		t.Errorf("tether_agents_connected = %v, want 1", v)
	}
}
