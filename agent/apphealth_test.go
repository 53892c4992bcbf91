package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether"
)

// scriptedApp is an app whose health check answers the given statuses in
// turn, then the last one forever. requests counts what it was asked.
func scriptedApp(t *testing.T, statuses ...int) (url string, requests *atomic.Int32) {
	requests = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(requests.Add(1)) - 1
		w.WriteHeader(statuses[min(i, len(statuses)-1)])
	}))
	t.Cleanup(srv.Close)
	return srv.URL, requests
}

// checkInterval is the apps' check interval in these tests. It is also
// how long one check may take, so not much shorter.
const checkInterval = 250 * time.Millisecond

func checkedApp(name, url string, threshold int) tether.App {
	return tether.App{Name: name, Healthcheck: &tether.Healthcheck{
		URL: url, Interval: tether.Duration(checkInterval), Threshold: threshold,
	}}
}

// TestCheckApp checks the health of one app over a series of answers:
// healthy on any answer below 400 (a redirect too), unhealthy only after
// Threshold failures in a row.
func TestCheckApp(t *testing.T) {
	ctx := testContext(t)
	url, requests := scriptedApp(t,
		http.StatusInternalServerError, // one failure: below the threshold
		http.StatusFound,               // healthy, and the count starts over
		http.StatusNotFound, http.StatusServiceUnavailable,
	)
	got := make(chan string, 100)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		checkApp(cctx, checkedApp("web", url, 2), func(v string) { got <- v })
	}()
	defer func() {
		cancel()
		<-done
	}()
	if v := next(t, ctx, got, "the first health"); v != tether.AppHealthHealthy {
		t.Fatalf("first health %q after a failure and a redirect, want %q", v, tether.AppHealthHealthy)
	}
	if v := next(t, ctx, got, "the next health"); v != tether.AppHealthUnhealthy {
		t.Fatalf("next health %q, want %q", v, tether.AppHealthUnhealthy)
	}
	if n := requests.Load(); n != 4 {
		t.Errorf("unhealthy after %d checks, want 4 (two failures in a row after the redirect)", n)
	}
}

// TestWatchApps checks what the server hears: the apps with a health check
// (others are not reported), first initializing, then as checked.
func TestWatchApps(t *testing.T) {
	ctx := testContext(t)
	handler, reports := recorder[tether.AppHealthReport](t, ok)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/agent/app-health", handler)
	a := newAgent(t, mux)

	apps := []tether.App{
		checkedApp("web", onlyURL(scriptedApp(t, http.StatusOK)), 1),
		checkedApp("db", onlyURL(scriptedApp(t, http.StatusBadGateway)), 1),
		{Name: "docs"}, // no health check
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.watchApps(wctx, apps, a.logger) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	first := next(t, ctx, reports, "the first report")
	if len(first.Apps) != 2 || first.Apps["docs"] != "" {
		t.Errorf("first report %v, want web and db only", first.Apps)
	}
	want := map[string]string{"web": tether.AppHealthHealthy, "db": tether.AppHealthUnhealthy}
	for r := first; r.Apps["web"] != want["web"] || r.Apps["db"] != want["db"]; {
		for app, h := range r.Apps {
			if h != tether.AppHealthInitializing && h != want[app] {
				t.Fatalf("reported %s %q, want %q", app, h, want[app])
			}
		}
		r = next(t, ctx, reports, "both apps' health")
	}
}

func onlyURL(u string, _ *atomic.Int32) string { return u }

// TestWatchNoApps: without health checks, nothing is reported.
func TestWatchNoApps(t *testing.T) {
	a := newAgent(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}))
	a.watchApps(testContext(t), []tether.App{{Name: "docs"}}, a.logger) // returns at once
}
