package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/agent/usershell"
	"github.com/tetherdev/tether/internal/mailbox"
	"github.com/tetherdev/tether/internal/retry"
)

// A template's startup script runs once per agent process, once the agent
// first connected to the server (so that a clone the server refuses runs
// nothing): as the workspace's user, with their login shell (`SHELL -c
// SCRIPT`), in their home directory, with a session's environment and no
// input. It runs for at most its timeout; then its process group gets
// SIGTERM, and SIGKILL startupKillGrace later. Programs it starts in the
// background keep running when it exits (unless it timed out), so a script
// may start the workspace's services; if they keep its output open, the
// agent stops reading it startupOutputGrace after the script exited.
//
// All of its output goes to a log file in the workspace
// ($XDG_STATE_HOME/tether/startup-script.log, by default under
// ~/.local/state), replaced at each run; the end of it, with the status, is
// reported to the server when the script starts, as it writes (at most
// every startupReportEvery) and when it ends, until the server has the
// final result.
const (
	startupKillGrace   = 5 * time.Second
	startupOutputGrace = 2 * time.Second
	startupReportEvery = 2 * time.Second
)

// startupRun is one run of the startup script, as reported.
type startupRun struct {
	mu      sync.Mutex
	status  tether.StartupScriptStatus // guarded by mu
	tail    []byte                     // the output's end, at most max bytes; guarded by mu
	cut     bool                       // output was dropped from the front; guarded by mu
	logPath string
	max     int

	changed mailbox.Mailbox[struct{}] // something to report
	done    chan struct{}             // closed once the status is final
}

func newStartupRun(logPath string) *startupRun {
	return &startupRun{logPath: logPath, max: tether.MaxStartupScriptOutput, done: make(chan struct{}),
		status: tether.StartupScriptStatus{Status: tether.StartupScriptRunning, StartedAt: time.Now()}}
}

// Write keeps the end of the output.
func (r *startupRun) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.tail = append(r.tail, p...)
	if over := len(r.tail) - r.max; over > 0 {
		r.tail = append(r.tail[:0], r.tail[over:]...)
		r.cut = true
	}
	r.mu.Unlock()
	r.changed.Put(struct{}{})
	return len(p), nil
}

// finish records the final status.
func (r *startupRun) finish(status string, code int) {
	now := time.Now()
	r.mu.Lock()
	r.status.Status, r.status.ExitCode, r.status.FinishedAt = status, &code, &now
	r.mu.Unlock()
	close(r.done)
	r.changed.Put(struct{}{})
}

// snapshot is the run as the server gets it: the output as valid UTF-8
// (what is not becomes U+FFFD), still within max bytes.
func (r *startupRun) snapshot() tether.StartupScriptResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.ToValidUTF8(string(r.tail), "\uFFFD")
	cut := r.cut
	if over := len(out) - r.max; over > 0 {
		out, cut = out[over:], true
	}
	if cut {
		// Start at a character, not inside one.
		for len(out) > 0 && !utf8.RuneStart(out[0]) {
			out = out[1:]
		}
	}
	return tether.StartupScriptResult{StartupScriptStatus: r.status, Output: out, OutputTruncated: cut, LogPath: r.logPath}
}

// startupLogPath is where the startup script's output is kept.
func startupLogPath(home string) string {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "tether", "startup-script.log")
}

// runStartupScript runs script (see above) with env added to a session's
// environment, reports how it goes, and returns once the server has the
// final result or ctx ends.
func (a *Agent) runStartupScript(ctx context.Context, script string, timeout time.Duration, env []string, log *slog.Logger) {
	u, err := usershell.Current()
	if err != nil {
		run := newStartupRun("")
		fmt.Fprintf(run, "tether agent: cannot run the startup script: %v\n", err)
		run.finish(tether.StartupScriptFailed, -1)
		a.reportStartup(ctx, run, log)
		return
	}
	logPath := startupLogPath(u.Home)
	var logFile io.Writer = io.Discard
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err == nil {
		if f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600); err == nil {
			defer f.Close()
			logFile = f
		} else {
			log.Warn("cannot keep the startup script's output in a file", slog.Any("err", err))
			logPath = ""
		}
	} else {
		log.Warn("cannot keep the startup script's output in a file", slog.Any("err", err))
		logPath = ""
	}
	run := newStartupRun(logPath)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		a.reportStartup(ctx, run, log)
	}()
	defer func() { <-reported }()

	cmd := u.Command(script)
	cmd.Env = usershell.Setenv(u.Environ(), env...)
	out := startupOutput{file: logFile, run: run}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = startupOutputGrace
	log.Info("running the startup script", slog.String("log", logPath), slog.Duration("timeout", timeout))
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "tether agent: cannot start the startup script: %v\n", err)
		run.finish(tether.StartupScriptFailed, -1)
		log.Error("cannot start the startup script", slog.Any("err", err))
		return
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pgid := cmd.Process.Pid
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var waitErr error
	timedOut := false
	select {
	case waitErr = <-exited:
	case <-timer.C:
		timedOut = true
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case waitErr = <-exited:
		case <-time.After(startupKillGrace):
			syscall.Kill(-pgid, syscall.SIGKILL)
			waitErr = <-exited
		}
		syscall.Kill(-pgid, syscall.SIGKILL) // what ignored SIGTERM in the background
	case <-ctx.Done():
		// The agent stops: so does the script, unreported.
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		return
	}
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	took := slog.Duration("took", time.Since(run.status.StartedAt).Round(time.Millisecond))
	switch {
	case timedOut:
		fmt.Fprintf(out, "\ntether agent: the startup script ran out of its %s and was stopped\n", timeout)
		run.finish(tether.StartupScriptTimedOut, code)
		log.Warn("the startup script timed out and was stopped", slog.Duration("timeout", timeout), slog.String("log", logPath))
	case code == 0 && (waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay)):
		run.finish(tether.StartupScriptSucceeded, 0)
		log.Info("the startup script succeeded", took)
	default:
		run.finish(tether.StartupScriptFailed, code)
		log.Warn("the startup script failed", slog.Int("exit_code", code), took, slog.String("log", logPath))
	}
}

// startupOutput writes the script's output to its log file and its run.
// A log file that fails (a full disk) loses its copy, not the run's.
type startupOutput struct {
	file io.Writer
	run  *startupRun
}

func (o startupOutput) Write(p []byte) (int, error) {
	o.file.Write(p)
	return o.run.Write(p)
}

// reportStartup sends the run to the server whenever it changed (at most
// every startupReportEvery while it runs), retrying failures, until the
// server has the final result, refuses the agent, or ctx ends.
func (a *Agent) reportStartup(ctx context.Context, run *startupRun, log *slog.Logger) {
	b := retry.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		r := run.snapshot()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.client.ReportStartupScript(rctx, r)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && isPermanent(err):
			log.Warn("the server refused the startup script's report", slog.Any("err", err))
			return
		case err != nil:
			log.Debug("report startup script", slog.Any("err", err))
			if !retry.Sleep(ctx, b.Next()) {
				return
			}
			continue
		case r.FinishedAt != nil:
			return
		}
		b.Reset()
		select {
		case <-ctx.Done():
			return
		case <-run.changed.Changed():
		}
		// Gather what comes next for a while, unless the run ends.
		t := time.NewTimer(startupReportEvery)
		select {
		case <-ctx.Done():
		case <-run.done:
		case <-t.C:
		}
		t.Stop()
	}
}
