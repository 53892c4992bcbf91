package agent

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether"
)

// startupServer records the startup script reports an agent sends.
func startupServer(t *testing.T) (*Agent, <-chan tether.StartupScriptResult) {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	h, got := recorder[tether.StartupScriptResult](t, ok)
	mux := http.NewServeMux()
	mux.Handle("POST /api/v2/agent/startup-script", h)
	return newAgent(t, mux), got
}

// finalReport waits for the report that ends the run.
func finalReport(t *testing.T, ctx context.Context, got <-chan tether.StartupScriptResult) (first, last tether.StartupScriptResult) {
	t.Helper()
	first = next(t, ctx, got, "the first startup script report")
	last = first
	for last.FinishedAt == nil {
		last = next(t, ctx, got, "the final startup script report")
	}
	return first, last
}

func TestStartupScript(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		timeout    time.Duration
		wantStatus string
		wantCode   int
		wantOutput string
	}{
		{"succeeds", "echo hello from $TETHER_WORKSPACE; echo to stderr >&2", time.Minute, tether.StartupScriptSucceeded, 0, "hello from dev\nto stderr\n"},
		{"fails", "echo about to fail; exit 3", time.Minute, tether.StartupScriptFailed, 3, "about to fail\n"},
		{"runs in the home directory", `[ "$PWD" = "$HOME" ] && echo home`, time.Minute, tether.StartupScriptSucceeded, 0, "home\n"},
		{"gets no input", "read line || echo no input", time.Minute, tether.StartupScriptSucceeded, 0, "no input\n"},
		// A service started in the background keeps the output open: the
		// script still ends when its shell does.
		{"starts a service", "sleep 30 & echo started", time.Minute, tether.StartupScriptSucceeded, 0, "started\n"},
		{"times out", "echo working; sleep 30", 500 * time.Millisecond, tether.StartupScriptTimedOut, -1, "working\n\ntether agent: the startup script ran out of its 500ms and was stopped\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, got := startupServer(t)
			ctx := testContext(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				a.runStartupScript(ctx, tt.script, tt.timeout, []string{"TETHER_WORKSPACE=dev"}, slog.New(slog.DiscardHandler))
			}()
			first, last := finalReport(t, ctx, got)
			<-done
			if first.Status != tether.StartupScriptRunning || first.FinishedAt != nil {
				t.Errorf("first report = %+v, want running", first.StartupScriptStatus)
			}
			if last.Status != tt.wantStatus || last.ExitCode == nil || *last.ExitCode != tt.wantCode {
				t.Fatalf("final report = %+v (output %q), want %s with %d", last.StartupScriptStatus, last.Output, tt.wantStatus, tt.wantCode)
			}
			if last.Output != tt.wantOutput {
				t.Errorf("output = %q, want %q", last.Output, tt.wantOutput)
			}
			if !last.Valid() {
				t.Errorf("final report is not valid: %+v", last.StartupScriptStatus)
			}
			logged, err := os.ReadFile(last.LogPath)
			if err != nil || string(logged) != tt.wantOutput {
				t.Errorf("log file %s = %q, %v; want the output", last.LogPath, logged, err)
			}
			if filepath.Base(last.LogPath) != "startup-script.log" {
				t.Errorf("log path = %s", last.LogPath)
			}
		})
	}
}

// TestStartupScriptOutputTail: a script that writes more than the server
// keeps reports its end, as text, and says that the start was cut.
func TestStartupScriptOutputTail(t *testing.T) {
	a, got := startupServer(t)
	ctx := testContext(t)
	// 40000 lines of "é" (3 bytes with the newline) and a last line;
	// then a byte that is not UTF-8.
	script := `i=0; while [ $i -lt 40000 ]; do echo é; i=$((i+1)); done; echo last; printf '\377\n'`
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.runStartupScript(ctx, script, time.Minute, nil, slog.New(slog.DiscardHandler))
	}()
	_, last := finalReport(t, ctx, got)
	<-done
	if !last.OutputTruncated || len(last.Output) > tether.MaxStartupScriptOutput || !strings.HasSuffix(last.Output, "é\nlast\n\uFFFD\n") {
		t.Errorf("output: truncated %v, %d bytes, ending %q", last.OutputTruncated, len(last.Output), last.Output[max(0, len(last.Output)-20):])
	}
	if !strings.HasPrefix(last.Output, "é\n") && !strings.HasPrefix(last.Output, "\n") {
		t.Errorf("output starts inside a character: %q", last.Output[:10])
	}
}

// TestStartupScriptRetriesReports: a report the server did not take is
// sent again, so that the final status reaches a server that was away.
func TestStartupScriptRetriesReports(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	var fails atomic.Int32
	fails.Store(2)
	h, got := recorder[tether.StartupScriptResult](t, func() int {
		if fails.Add(-1) >= 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	mux := http.NewServeMux()
	mux.Handle("POST /api/v2/agent/startup-script", h)
	a := newAgent(t, mux)
	ctx := testContext(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.runStartupScript(ctx, "exit 0", time.Minute, nil, slog.New(slog.DiscardHandler))
	}()
	var last tether.StartupScriptResult
	for last.FinishedAt == nil || fails.Load() > 0 {
		last = next(t, ctx, got, "the final report, after the server's failures")
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the run did not end once the server took its final report")
	}
	if last.Status != tether.StartupScriptSucceeded {
		t.Errorf("final = %+v", last.StartupScriptStatus)
	}
}
