package cli

import (
	"bytes"
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"gopkg.in/yaml.v3"
)

// FuzzReadTemplate parses template files as `tether templates push` does
// (YAML, unknown fields refused, then the server's own Validate). A
// template that is accepted must hold what the server and the agent rely
// on, be accepted again unchanged (validation is idempotent), and read back
// the same after writing it out as YAML or as the JSON body the CLI sends.
func FuzzReadTemplate(f *testing.F) {
	for _, seed := range []string{
		// The README's example.
		`name: python-dev
agent_url: https://tether.internal.example.com   # optional: agents of this template use this URL
apps:
  - name: web
    url: http://127.0.0.1:8080
    subdomain: false
    share: owner             # owner | authenticated | public
    healthcheck: {url: http://127.0.0.1:8080/healthz, interval: 5s}
`,
		"name: empty\n",
		"name: py\napps:\n  - {name: a, url: 'http://[::1]:65535/x', subdomain: true, share: public}\n  - {name: b, url: https://h, healthcheck: {url: http://h/, interval: 1m, threshold: 7}}\n",
		"name: py\napps:\n  - {name: web, url: 'http://127.0.0.1:0'}\n",
		"name: py\napps:\n  - {name: web, url: 'http://127.0.0.1:99999'}\n",
		"name: py\napps:\n  - {name: web, url: http://h, healthcheck: {url: http://h, interval: 500ms}}\n",
		"name: py\nextra: 1\n",
		"name: &a py\nagent_url: *a\n",
		"---\nname: a\n---\nname: b\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		req, err := readTemplate("-", bytes.NewReader(file))
		if err != nil {
			if strings.Contains(err.Error(), "\n\t") || err.Error() == "" {
				t.Fatalf("error is not one clear message: %q", err)
			}
			return
		}
		checkTemplate(t, req)

		again := cloneTemplate(t, req)
		if err := again.Validate(); err != nil || !sameTemplate(again, req) {
			t.Fatalf("validating an accepted template again: %v\n%+v\n%+v", err, req, again)
		}

		out, err := yaml.Marshal(req)
		if err != nil {
			t.Fatalf("accepted template does not encode as YAML: %v", err)
		}
		back, err := readTemplate("-", bytes.NewReader(out))
		if err != nil {
			t.Fatalf("accepted template, written as YAML, is refused: %v\n%s", err, out)
		}
		if !sameTemplate(back, req) {
			t.Fatalf("YAML round trip changed the template:\n%+v\n%+v\n%s", req, back, out)
		}
		if j := cloneTemplate(t, req); !sameTemplate(j, req) {
			t.Fatalf("JSON round trip changed the template:\n%+v\n%+v", req, j)
		}
	})
}

// sameTemplate compares templates as the server stores them: no apps is
// the same as an empty list of them.
func sameTemplate(a, b tether.PushTemplateRequest) bool {
	if len(a.Apps) == 0 && len(b.Apps) == 0 {
		a.Apps, b.Apps = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// cloneTemplate copies req through its JSON encoding, as the CLI sends it.
func cloneTemplate(t *testing.T, req tether.PushTemplateRequest) tether.PushTemplateRequest {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("template does not encode as JSON: %v", err)
	}
	var out tether.PushTemplateRequest
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("template's JSON %s does not decode: %v", b, err)
	}
	return out
}

// checkTemplate checks what the server stores and agents use: valid names,
// each app once, reachable http(s) URLs (a host, a port from 1 to 65535),
// a known sharing level, and health checks with a positive threshold and
// an interval of at least a second.
func checkTemplate(t *testing.T, req tether.PushTemplateRequest) {
	t.Helper()
	if err := tether.ValidateName("template", req.Name); err != nil {
		t.Fatalf("accepted template has an invalid name: %v", err)
	}
	if req.AgentURL != "" {
		checkHTTPURL(t, "agent_url", req.AgentURL)
	}
	seen := map[string]bool{}
	for _, a := range req.Apps {
		if err := tether.ValidateName("app", a.Name); err != nil || seen[a.Name] {
			t.Fatalf("accepted template has app name %q (%v, duplicate %v)", a.Name, err, seen[a.Name])
		}
		seen[a.Name] = true
		checkHTTPURL(t, "app url", a.URL)
		if !a.Share.Valid() {
			t.Fatalf("accepted app %s has share %q", a.Name, a.Share)
		}
		if h := a.Healthcheck; h != nil {
			checkHTTPURL(t, "healthcheck url", h.URL)
			if time.Duration(h.Interval) < time.Second || h.Threshold < 1 {
				t.Fatalf("accepted app %s has health check every %v, threshold %d", a.Name, time.Duration(h.Interval), h.Threshold)
			}
		}
	}
}

func checkHTTPURL(t *testing.T, what, s string) {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		t.Fatalf("accepted %s %q is not an http(s) URL with a host (%v)", what, s, err)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			t.Fatalf("accepted %s %q has port %q, not 1 to 65535", what, s, p)
		}
	}
}
