package metrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/internal/metrics"
	"github.com/tetherdev/tether/internal/metrics/metricstest"
)

const testTimeout = 10 * time.Second

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: testTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestListenPrometheus(t *testing.T) {
	reg := metrics.NewRegistry("v1.2.3")
	l, err := metrics.ListenPrometheus("127.0.0.1:0", reg, discard())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, body := get(t, "http://"+l.Addr().String()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{`tether_build_info{version="v1.2.3"} 1`, "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if code, _ := get(t, "http://"+l.Addr().String()+"/"); code != http.StatusNotFound {
		t.Errorf("GET /: %d, want 404", code)
	}
}

func TestListenPprof(t *testing.T) {
	l, err := metrics.ListenPprof("127.0.0.1:0", discard())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, body := get(t, "http://"+l.Addr().String()+"/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("GET goroutine profile: %d %.100q", code, body)
	}
}

func TestListenAddresses(t *testing.T) {
	tests := []struct {
		name, addr string
		pprofErr   string // "" when pprof may listen there
		promErr    string
	}{
		{name: "ipv4 loopback", addr: "127.0.0.1:0"},
		{name: "localhost", addr: "localhost:0"},
		{name: "every interface", addr: ":0", pprofErr: "must be a loopback address"},
		{name: "unspecified", addr: "0.0.0.0:0", pprofErr: "must be a loopback address"},
		{name: "no port", addr: "127.0.0.1", pprofErr: "want host:port", promErr: "want host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(flag string, l *metrics.Listener, err error, want string) {
				t.Helper()
				if want == "" {
					if err != nil {
						t.Fatalf("%s: %v", flag, err)
					}
					l.Close()
					return
				}
				if err == nil {
					l.Close()
					t.Fatalf("%s %s: listened, want an error with %q", flag, tt.addr, want)
				}
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--"+flag) {
					t.Fatalf("%s: error %q, want it to name --%s and say %q", flag, err, flag, want)
				}
			}
			l, err := metrics.ListenPprof(tt.addr, discard())
			check("pprof-address", l, err, tt.pprofErr)
			l, err = metrics.ListenPrometheus(tt.addr, prometheus.NewRegistry(), discard())
			check("prometheus-address", l, err, tt.promErr)
		})
	}
}

func TestHTTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewHTTP(reg)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "missing" {
			http.NotFound(w, r)
		}
	})
	mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack through the recorder: %v", err)
			return
		}
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: close\r\n\r\n")
		rw.Flush()
		c.Close()
	})
	route := func(r *http.Request) string {
		if r.Pattern == "" {
			return "unmatched"
		}
		return r.Pattern
	}
	srv := httptest.NewServer(m.Wrap(mux, route))
	defer srv.Close()

	for _, p := range []string{"/users/alice", "/users/bob", "/users/missing", "/nowhere"} {
		get(t, srv.URL+p)
	}
	resp, err := srv.Client().Get(srv.URL + "/upgrade")
	if err == nil {
		resp.Body.Close()
	}
	// The client has its 101 before the hijacking handler returns and the
	// request is counted: wait for the count.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, _, _ := metricstest.Value(reg, "tether_http_requests_total", "route", "GET /upgrade", "method", "GET", "code", "101"); got == 1 {
			break
		}
	}

	tests := []struct {
		route, code string
		want        float64
	}{
		{"GET /users/{name}", "200", 2},
		{"GET /users/{name}", "404", 1},
		{"unmatched", "404", 1},
		{"GET /upgrade", "101", 1},
	}
	for _, tt := range tests {
		got, _, err := metricstest.Value(reg, "tether_http_requests_total", "route", tt.route, "method", "GET", "code", tt.code)
		if err != nil || got != tt.want {
			t.Errorf("requests{route=%q,code=%s} = %v (%v), want %v", tt.route, tt.code, got, err, tt.want)
		}
	}
	n, err := metricstest.Series(reg, "tether_http_request_duration_seconds")
	if err != nil || n != 3 {
		t.Errorf("duration series: %d (%v), want 3 (one per route and method)", n, err)
	}
	if v, _, _ := metricstest.Value(reg, "tether_http_requests_in_flight"); v != 0 {
		t.Errorf("in flight after every request ended: %v", v)
	}
}

// TestPrometheusBeyondLoopbackWarns: metrics may be served to another
// host, which the log says.
func TestPrometheusBeyondLoopbackWarns(t *testing.T) {
	tests := []struct {
		addr string
		warn bool
	}{
		{"127.0.0.1:0", false},
		{"[::1]:0", false},
		{"0.0.0.0:0", true},
	}
	for _, tt := range tests {
		var buf strings.Builder
		logger := slog.New(slog.NewTextHandler(&buf, nil))
		l, err := metrics.ListenPrometheus(tt.addr, prometheus.NewRegistry(), logger)
		if err != nil {
			t.Logf("%s: %v (no such address here)", tt.addr, err)
			continue
		}
		l.Close()
		if got := strings.Contains(buf.String(), "level=WARN"); got != tt.warn {
			t.Errorf("%s: warned %v, want %v:\n%s", tt.addr, got, tt.warn, buf.String())
		}
	}
}
