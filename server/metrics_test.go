package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/metrics/metricstest"
	"github.com/tetherdev/tether/site"
)

func dashboardStub() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "dashboard") })
}

// TestUnknownPaths: the dashboard is served at its pages only; other
// paths outside the API are 404, as a page for browsers.
func TestUnknownPaths(t *testing.T) {
	ts := newTestServer(t, Options{Site: dashboardStub(), SitePage: site.IsPage}, nil)
	tests := []struct {
		path, accept string
		want         int
		body         string // a part of the answer
	}{
		{path: "/", want: http.StatusOK, body: "dashboard"},
		{path: "/login", want: http.StatusOK, body: "dashboard"},
		{path: "/health", want: http.StatusOK, body: "dashboard"},
		{path: "/@bob/dev/terminal", want: http.StatusOK, body: "dashboard"},
		{path: "/assets/main-ABCDEFGH.js", want: http.StatusOK, body: "dashboard"},
		{path: "/healthz", want: http.StatusOK, body: "ok\n"},
		{path: "/metrics", want: http.StatusNotFound, body: `"message": "no page at /metrics"`},
		{path: "/debug/pprof/", want: http.StatusNotFound, body: "no page at /debug/pprof/"},
		{path: "/debug/pprof/", accept: "text/html", want: http.StatusNotFound, body: `<p class="message">No page at /debug/pprof/</p>`},
		{path: "/@bob/dev", accept: "text/html", want: http.StatusNotFound, body: "No page at /@bob/dev"},
		{path: "/wp-login.php", want: http.StatusNotFound},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(testContext(t), "GET", ts.http.URL+tt.path, nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want || !strings.Contains(string(b), tt.body) {
			t.Errorf("GET %s (Accept %q): %d %q, want %d with %q", tt.path, tt.accept, resp.StatusCode, b, tt.want, tt.body)
		}
	}
}

// TestRequestMetrics: requests are counted by the routing table's pattern,
// never by their raw path.
func TestRequestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := newTestServer(t, Options{Site: dashboardStub(), SitePage: site.IsPage, Metrics: reg}, nil)
	admin := ts.firstAdmin("alice")
	for _, p := range []string{"/api/v2/users/alice", "/api/v2/users/bob", "/api/v2/buildinfo", "/nothing/here", "/@alice/dev/apps/web/"} {
		ts.call(admin, "GET", p, nil, nil)
	}
	tests := []struct {
		route, code string
		want        float64
	}{
		{"GET /api/v2/users/{user}", "200", 1},
		{"GET /api/v2/users/{user}", "404", 1},
		{"GET /api/v2/buildinfo", "200", 1},
		{"POST /api/v2/users/first", "201", 1},
		{"/", "404", 1},
		{routePathApp, "404", 1},
	}
	for _, tt := range tests {
		got, _, err := metricstest.Value(reg, "tether_http_requests_total", "route", tt.route, "code", tt.code)
		if err != nil || got != tt.want {
			t.Errorf("tether_http_requests_total{route=%q,code=%q} = %v (%v), want %v", tt.route, tt.code, got, err, tt.want)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && strings.Contains(l.GetValue(), "alice") {
					t.Errorf("%s has a raw path as its route: %q", f.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, name := range []string{"tether_agents_connected", "tether_app_requests_total"} {
		if v, ok, _ := metricstest.Value(reg, name); !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", name, v, ok)
		}
	}
	for _, kind := range []string{"terminal", "tunnel"} {
		if v, ok, _ := metricstest.Value(reg, "tether_sessions", "kind", kind); !ok || v != 0 {
			t.Errorf("tether_sessions{kind=%q} = %v (present %v), want 0", kind, v, ok)
		}
	}
}
