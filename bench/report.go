package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// A measure is one figure a part of the bench produced.
type measure struct {
	Name  string  `json:"name"` // slash-separated, benchstat style: "speedtest/direct"
	Value float64 `json:"value"`
	Unit  string  `json:"unit"` // "MB/s", "µs", "ms", "KiB", "µs/update"
	// Better says which way is good: "higher" or "lower".
	Better string `json:"better"`
	Note   string `json:"note,omitempty"` // path taken, sample count, ...
}

// results collects measures and notes as the parts run. Parts run one at a
// time, so it needs no lock.
type results struct {
	measures map[string]measure
	order    []string
	skipped  map[string]string // part → why it did not run
	failed   map[string]string // part → what went wrong
}

func newResults() *results {
	return &results{measures: map[string]measure{}, skipped: map[string]string{}, failed: map[string]string{}}
}

func (r *results) add(m measure) {
	if _, ok := r.measures[m.Name]; !ok {
		r.order = append(r.order, m.Name)
	}
	r.measures[m.Name] = m
}

func (r *results) higher(name string, v float64, unit, note string) {
	r.add(measure{Name: name, Value: v, Unit: unit, Better: "higher", Note: note})
}

func (r *results) lower(name string, v float64, unit, note string) {
	r.add(measure{Name: name, Value: v, Unit: unit, Better: "lower", Note: note})
}

func (r *results) get(name string) (measure, bool) {
	m, ok := r.measures[name]
	return m, ok
}

// deriveRTTOverhead adds what the product itself adds to a forwarded
// round trip: the forwarded figure less the library's (two processes, the
// tunnel alone) and less what the two extra process crossings cost plain
// TCP (forwarders against a round trip within one process). It adds
// nothing unless all four were measured.
func (r *results) deriveRTTOverhead() {
	fwd, ok1 := r.get("port-forward/direct/rtt-p50")
	lib, ok2 := r.get("library/direct-2proc/rtt-p50")
	tcpFwd, ok3 := r.get("tcp/rtt-forwarded-p50")
	tcp, ok4 := r.get("tcp/rtt-p50")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return
	}
	v := fwd.Value - lib.Value - (tcpFwd.Value - tcp.Value)
	r.lower("port-forward/direct/rtt-overhead-p50", v, "µs", fmt.Sprintf(
		"forwarded %.0f − library in 2 processes %.0f − (plain TCP through 2 forwarders %.0f − plain TCP %.0f)",
		fwd.Value, lib.Value, tcpFwd.Value, tcp.Value))
}

// A comparison is one row of the table: a measure, optionally against a
// baseline measured in the same run, and optionally judged against a goal.
type comparison struct {
	Label    string
	Measure  string
	Baseline string // empty: no ratio
	// Goal judges the row; nil rows are for information. It gets the
	// measure's value, the baseline's (0 without one) and returns whether
	// the goal is met.
	Goal     func(v, base float64) bool
	GoalText string
}

// row is a comparison as printed and saved.
type row struct {
	Label     string   `json:"label"`
	Measure   string   `json:"measure"`
	Value     *float64 `json:"value,omitempty"`
	Unit      string   `json:"unit,omitempty"`
	Baseline  string   `json:"baseline,omitempty"`
	BaseValue *float64 `json:"baseline_value,omitempty"`
	Ratio     *float64 `json:"ratio,omitempty"`
	Goal      string   `json:"goal,omitempty"`
	Result    string   `json:"result"` // PASS, MISS, "-" (no goal) or "n/a" (not measured)
	Note      string   `json:"note,omitempty"`
}

func (r *results) rows(cs []comparison, parts map[string]bool) []row {
	var rows []row
	for _, c := range cs {
		if !parts[partOf(c.Measure)] {
			continue
		}
		rw := row{Label: c.Label, Measure: c.Measure, Baseline: c.Baseline, Goal: c.GoalText, Result: "n/a"}
		m, ok := r.get(c.Measure)
		if !ok {
			rows = append(rows, rw)
			continue
		}
		v := m.Value
		rw.Value, rw.Unit, rw.Note = &v, m.Unit, m.Note
		base := 0.0
		haveBase := c.Baseline == ""
		if c.Baseline != "" {
			if b, ok := r.get(c.Baseline); ok {
				base = b.Value
				rw.BaseValue = &base
				haveBase = true
				if base != 0 {
					ratio := v / base
					rw.Ratio = &ratio
				}
			}
		}
		switch {
		case c.Goal == nil:
			rw.Result = "-"
		case !haveBase:
			rw.Result = "n/a"
		case c.Goal(v, base):
			rw.Result = "PASS"
		default:
			rw.Result = "MISS"
		}
		rows = append(rows, rw)
	}
	return rows
}

// printTable writes the one table the bench prints.
func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASURE\tVALUE\tBASELINE\tRATIO\tGOAL\tRESULT\tNOTE")
	for _, r := range rows {
		val, base, ratio := "—", "", ""
		if r.Value != nil {
			val = formatValue(*r.Value, r.Unit)
		}
		if r.BaseValue != nil {
			base = formatValue(*r.BaseValue, r.Unit) + " " + shortName(r.Baseline)
		} else if r.Baseline != "" {
			base = "— " + shortName(r.Baseline)
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.3f", *r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Label, val, base, ratio, r.Goal, r.Result, r.Note)
	}
	tw.Flush()
}

// shortName is how a baseline is named in the table: its measure name in
// parentheses.
func shortName(name string) string { return "(" + name + ")" }

func formatValue(v float64, unit string) string {
	switch {
	case unit == "lines" || unit == "sessions":
		return fmt.Sprintf("%.0f %s", v, unit) // counts
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

// record is what a run saves as JSON, to compare runs across commits.
type record struct {
	Time     time.Time         `json:"time"`
	Commit   string            `json:"commit"`
	Dirty    bool              `json:"dirty"`  // the checkout had uncommitted changes to tracked files
	Binary   string            `json:"binary"` // "built" from the checkout, or the -tether path given
	Go       string            `json:"go"`
	CPUs     int               `json:"cpus"`
	Machine  string            `json:"machine"` // CPU model, memory, kernel
	Args     []string          `json:"args"`
	Measures []measure         `json:"measures"`
	Rows     []row             `json:"rows"`
	Skipped  map[string]string `json:"skipped,omitempty"`
	Failed   map[string]string `json:"failed,omitempty"`
	LoadAvg  [2]string         `json:"load_avg"` // 1-minute load average before and after
}

func (r *results) sortedMeasures() []measure {
	ms := make([]measure, 0, len(r.order))
	for _, n := range r.order {
		ms = append(ms, r.measures[n])
	}
	return ms
}

// save writes <dir>/<stamp>.json and, for benchstat, <dir>/<stamp>.txt.
func save(dir string, rec record) (jsonPath, txtPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create results directory: %w", err)
	}
	stamp := rec.Time.UTC().Format("20060102T150405Z")
	jsonPath = filepath.Join(dir, stamp+".json")
	txtPath = filepath.Join(dir, stamp+".txt")
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("write results: %w", err)
	}
	var sb strings.Builder
	writeBenchfmt(&sb, rec)
	if err := os.WriteFile(txtPath, []byte(sb.String()), 0o644); err != nil {
		return "", "", fmt.Errorf("write results: %w", err)
	}
	return jsonPath, txtPath, nil
}

// machine describes the machine the bench runs on: CPU model and count,
// memory, kernel. Parts it cannot read are left out.
func machine() string {
	var parts []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				parts = append(parts, strings.TrimSpace(v))
				break
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err == nil {
			parts = append(parts, fmt.Sprintf("%.0f GiB", float64(kib)/(1<<20)))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(b)))
	}
	return strings.Join(parts, ", ")
}

// writeBenchfmt writes the measures in Go's benchmark format, one line per
// measure, so that `benchstat old.txt new.txt` compares two runs.
func writeBenchfmt(w io.Writer, rec record) {
	fmt.Fprintf(w, "goos: linux\ngoarch: amd64\npkg: github.com/tetherdev/tether/bench\n")
	if rec.Machine != "" {
		fmt.Fprintf(w, "machine: %s\n", rec.Machine)
	}
	fmt.Fprintf(w, "commit: %s\n", rec.Commit)
	ms := append([]measure(nil), rec.Measures...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	for _, m := range ms {
		fmt.Fprintf(w, "Benchmark%s 1 %g %s\n", benchName(m.Name), m.Value, benchUnit(m.Unit))
	}
}

var nonBenchChars = regexp.MustCompile(`[^A-Za-z0-9/=_.-]`)

// benchName turns "speedtest/direct" into "Speedtest/direct".
func benchName(name string) string {
	name = nonBenchChars.ReplaceAllString(name, "_")
	if name == "" {
		return name
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

// benchUnit makes a unit benchstat accepts: no spaces, ASCII.
func benchUnit(u string) string {
	u = strings.ReplaceAll(u, "µ", "u")
	return strings.ReplaceAll(u, " ", "-")
}
