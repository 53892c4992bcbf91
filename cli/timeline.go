package cli

import (
	"context"
	"log/slog"
	"time"
)

// timeline logs the phases of connecting to a workspace at debug level
// (--log-level debug), each with its start and end relative to the
// command's start, so that a slow connection shows where its time went:
//
//	level=DEBUG msg=phase component=timeline phase=coordination start_ms=1.2 end_ms=412.9
//
// Phases overlap where they run at once. The bench reads these lines
// (bench/latency.go).
type timeline struct {
	log   *slog.Logger
	start time.Time
}

func newTimeline(log *slog.Logger, start time.Time) *timeline {
	return &timeline{log: log.With(slog.String("component", "timeline")), start: start}
}

// begin starts a phase; the function it returns ends it, with attrs added
// to its line. Ending a phase twice logs it once.
func (t *timeline) begin(phase string) (end func(attrs ...any)) {
	if !t.log.Enabled(context.Background(), slog.LevelDebug) {
		return func(...any) {}
	}
	started := time.Now()
	done := false
	return func(attrs ...any) {
		if done {
			return
		}
		done = true
		t.log.Debug("phase", append([]any{slog.String("phase", phase),
			slog.Float64("start_ms", t.ms(started)), slog.Float64("end_ms", t.ms(time.Now()))}, attrs...)...)
	}
}

// mark logs an instant: something that happened, with no duration.
func (t *timeline) mark(event string, attrs ...any) {
	if !t.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t.log.Debug("event", append([]any{slog.String("event", event), slog.Float64("at_ms", t.ms(time.Now()))}, attrs...)...)
}

func (t *timeline) ms(at time.Time) float64 {
	return float64(at.Sub(t.start).Microseconds()) / 1000
}
