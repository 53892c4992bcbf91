// Package logging makes the one logger of a Tether process (the server, a
// workspace proxy, an agent, a CLI command): text or JSON (--log-format),
// at a level (--log-level), with every log line of the process going
// through it, the libraries' included.
//
// Two things keep its output clean enough for machines to read:
//
//   - Attributes set with With do not repeat. Components nest
//     (the server's agentnet's tunnel's wireguard), and each adds its own
//     component attribute: the handler joins them into one
//     ("server.agentnet.tunnel"), and any other key given again replaces
//     the earlier value. slog's own handlers would write the key twice,
//     which a JSON reader takes as the last one, or refuses.
//   - CaptureStdLog sends what the libraries write through Go's global log
//     package (Tailscale's STUN server, for one) to the logger, as one
//     record a line, instead of letting it reach stderr in another format.
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Formats are the values of --log-format.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger that writes to w in format (text or json) from
// level (debug, info, warn or error) up. Errors name the flag at fault.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q must be debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler
	switch strings.ToLower(format) {
	case FormatText, "":
		h = slog.NewTextHandler(w, opts)
	case FormatJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q must be text or json", format)
	}
	return slog.New(&handler{inner: h}), nil
}

// componentKey is the attribute that names a component; nested ones join.
const componentKey = "component"

// handler keeps the attributes given by With itself, so that it can merge
// them, and hands each record to inner with the merged set.
type handler struct {
	inner slog.Handler // with the groups opened so far, and the attributes before them
	attrs []slog.Attr  // since the last group, one per key
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = merge(attrs, a)
		return true
	})
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(attrs...)
	return h.inner.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	attrs := slices.Clone(h.attrs)
	for _, a := range as {
		attrs = merge(attrs, a)
	}
	return &handler{inner: h.inner, attrs: attrs}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	// Attributes inside the group are a scope of their own.
	return &handler{inner: h.inner.WithAttrs(h.attrs).WithGroup(name)}
}

// merge adds a to attrs, replacing an attribute with the same key (or, for
// components, nesting the new one under the old).
func merge(attrs []slog.Attr, a slog.Attr) []slog.Attr {
	if a.Equal(slog.Attr{}) {
		return attrs
	}
	for i, old := range attrs {
		if old.Key != a.Key || a.Key == "" {
			continue
		}
		if a.Key == componentKey && old.Value.String() != a.Value.String() {
			a = slog.String(componentKey, old.Value.String()+"."+a.Value.String())
		}
		attrs[i] = a
		return attrs
	}
	return append(attrs, a)
}

// CaptureStdLog makes Go's global log package write to logger at info
// level, one record per line, and returns a function that undoes it. The
// global logger is the process's: call it once, from the command that owns
// the process, before starting anything that logs.
func CaptureStdLog(logger *slog.Logger) (restore func()) {
	prevOut, prevFlags, prevPrefix := log.Writer(), log.Flags(), log.Prefix()
	log.SetOutput(&stdWriter{logger: logger.With(slog.String(componentKey, "stdlog"))})
	log.SetFlags(0) // the record has its time
	log.SetPrefix("")
	return func() {
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
		log.SetPrefix(prevPrefix)
	}
}

// stdWriter turns what the global logger writes (one line per Write) into
// records.
type stdWriter struct {
	logger *slog.Logger
	mu     sync.Mutex // one line at a time, in order
}

func (w *stdWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for line := range bytes.Lines(p) {
		if msg := strings.TrimRight(string(line), "\r\n"); msg != "" {
			w.logger.Info(msg)
		}
	}
	return len(p), nil
}
