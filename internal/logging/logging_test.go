package logging_test

import (
	"bytes"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/logging"
)

// lines decodes each line of out as a JSON object.
func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", l, err)
		}
		recs = append(recs, m)
	}
	return recs
}

func TestNewErrors(t *testing.T) {
	tests := []struct{ name, level, format, want string }{
		{"bad level", "loud", "text", `--log-level "loud" must be debug, info, warn or error`},
		{"bad format", "info", "xml", `--log-format "xml" must be text or json`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := logging.New(&bytes.Buffer{}, tt.level, tt.format)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNoDuplicateAttributes(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want map[string]any
		// nested: keys also appear inside groups, so count nothing
		nested bool
	}{
		{
			name: "nested components join",
			log: func(l *slog.Logger) {
				l.With("component", "server").With("component", "agentnet").With(slog.String("component", "tunnel")).Info("m")
			},
			want: map[string]any{"component": "server.agentnet.tunnel"},
		},
		{
			name: "a key given again replaces",
			log: func(l *slog.Logger) {
				l.With("peer", "a").With("peer", "b").Info("m", "peer", "c", "n", 1)
			},
			want: map[string]any{"peer": "c", "n": float64(1)},
		},
		{
			name: "groups keep their own scope",
			log: func(l *slog.Logger) {
				l.With("component", "x").WithGroup("g").With("component", "y").Info("m")
			},
			want:   map[string]any{"component": "x", "g": map[string]any{"component": "y"}},
			nested: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := logging.New(&buf, "info", "json")
			if err != nil {
				t.Fatal(err)
			}
			tt.log(l)
			out := buf.String()
			recs := lines(t, out)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %s", len(recs), out)
			}
			for k, v := range tt.want {
				got, _ := json.Marshal(recs[0][k])
				want, _ := json.Marshal(v)
				if string(got) != string(want) {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
				// JSON decoding keeps the last of repeated keys: look at
				// the text itself too.
				if n := strings.Count(out, `"`+k+`":`); n != 1 && !tt.nested {
					t.Errorf("key %q appears %d times: %s", k, n, out)
				}
			}
		})
	}
}

func TestCaptureStdLog(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	restore := logging.CaptureStdLog(l.With("component", "server"))
	log.Printf("STUN server listening on %v", "[::]:3478")
	log.Print("two\nlines")
	restore()
	recs := lines(t, buf.String())
	var msgs []string
	for _, r := range recs {
		msgs = append(msgs, r["msg"].(string))
		if r["level"] != "INFO" || r["component"] != "server.stdlog" {
			t.Errorf("record %v: want level INFO and component server.stdlog", r)
		}
	}
	if got, want := strings.Join(msgs, "|"), "STUN server listening on [::]:3478|two|lines"; got != want {
		t.Errorf("messages %q, want %q", got, want)
	}
	if log.Writer() == any(&buf) || log.Flags() == 0 {
		t.Errorf("restore left the global logger captured")
	}
}
