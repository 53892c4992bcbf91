package agent

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/mailbox"
)

// appHealthResend is how often the agent repeats its apps' health even when
// nothing changed, so that a restarted server learns it again.
const appHealthResend = 30 * time.Second

// watchApps runs each app's health check and reports the results to the
// server whenever one changes, and every appHealthResend.
func (a *Agent) watchApps(ctx context.Context, apps []tether.App, log *slog.Logger) {
	var (
		mu     sync.Mutex
		health = map[string]string{} // guarded by mu
		// latest holds copies of health for the reporting loop. It is
		// put under mu, so that a copy never replaces a newer one.
		latest mailbox.Mailbox[map[string]string]
	)
	set := func(name, v string) {
		mu.Lock()
		defer mu.Unlock()
		if health[name] == v {
			return
		}
		health[name] = v
		latest.Put(maps.Clone(health))
		log.Info("app health", slog.String("app", name), slog.String("health", v))
	}
	var wg sync.WaitGroup
	for _, app := range apps {
		if app.Healthcheck == nil {
			continue
		}
		set(app.Name, tether.AppHealthInitializing)
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkApp(ctx, app, func(v string) { set(app.Name, v) })
		}()
	}
	defer wg.Wait()
	if latest.Get() == nil {
		return // no app has a health check
	}
	t := time.NewTicker(appHealthResend)
	defer t.Stop()
	for {
		report := tether.AppHealthReport{Apps: latest.Get()}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := a.client.ReportAppHealth(rctx, report); err != nil && ctx.Err() == nil {
			log.Debug("report app health", slog.Any("err", err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-latest.Changed():
		case <-t.C:
		}
	}
}

// checkApp polls one app's health check URL until ctx ends: the app is
// healthy after a 2xx or 3xx answer and unhealthy after Threshold failures
// in a row.
func checkApp(ctx context.Context, app tether.App, set func(string)) {
	hc := app.Healthcheck
	interval := time.Duration(hc.Interval)
	client := &http.Client{
		Timeout: min(interval, 10*time.Second),
		// A redirect is an answer: the app is up.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	failures := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, hc.URL, nil)
		ok := false
		if err == nil {
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				ok = resp.StatusCode < 400
			}
		}
		switch {
		case ok:
			failures = 0
			set(tether.AppHealthHealthy)
		case ctx.Err() != nil:
			return
		default:
			failures++
			if failures >= hc.Threshold {
				set(tether.AppHealthUnhealthy)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
