package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	seq := func(n int) []time.Duration {
		var ds []time.Duration
		for i := n; i >= 1; i-- { // reversed: summarize must sort
			ds = append(ds, time.Duration(i)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		name          string
		in            []time.Duration
		p50, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"30 runs: p99 is the maximum", seq(30), 15 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond},
		{"100", seq(100), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		{"1000", seq(1000), 500 * time.Millisecond, 990 * time.Millisecond, 1000 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := summarize(tc.in)
			if d.P50 != tc.p50 || d.P99 != tc.p99 || d.Max != tc.max || d.N != len(tc.in) {
				t.Errorf("summarize = %+v; want p50 %v, p99 %v, max %v", d, tc.p50, tc.p99, tc.max)
			}
		})
	}
}

func TestRows(t *testing.T) {
	res := newResults()
	res.higher("tcp/throughput", 1000, "MB/s", "")
	res.higher("speedtest/direct", 200, "MB/s", "direct")
	res.higher("speedtest/derp", 40, "MB/s", "")
	parts := map[string]bool{"tcp": true, "speedtest": true, "portforward": true}
	cs := []comparison{
		{Label: "baseline", Measure: "tcp/throughput"},
		{Label: "pass", Measure: "speedtest/direct", Baseline: "tcp/throughput", Goal: atLeast(0.16)},
		{Label: "miss", Measure: "speedtest/derp", Baseline: "speedtest/direct", Goal: atLeast(0.25)},
		{Label: "absolute miss", Measure: "speedtest/derp", Goal: above(70)},
		{Label: "not measured", Measure: "port-forward/direct", Baseline: "tcp/throughput", Goal: atLeast(0.16)},
		{Label: "part not run", Measure: "ssh/true-p50", Goal: atMost(250)},
	}
	rows := res.rows(cs, parts)
	want := []struct {
		label, result string
		ratio         float64
	}{
		{"baseline", "-", 0},
		{"pass", "PASS", 0.2},
		{"miss", "MISS", 0.2},
		{"absolute miss", "MISS", 0},
		{"not measured", "n/a", 0},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d (a part not run has no row): %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		r := rows[i]
		if r.Label != w.label || r.Result != w.result {
			t.Errorf("row %d = %s %s; want %s %s", i, r.Label, r.Result, w.label, w.result)
		}
		if w.ratio != 0 && (r.Ratio == nil || *r.Ratio != w.ratio) {
			t.Errorf("row %s ratio = %v; want %v", r.Label, r.Ratio, w.ratio)
		}
	}
	var b strings.Builder
	printTable(&b, rows)
	if !strings.Contains(b.String(), "0.200") || !strings.Contains(b.String(), "(tcp/throughput)") {
		t.Errorf("table lacks the ratio or the baseline's name:\n%s", b.String())
	}
}

func TestParseNAT(t *testing.T) {
	out := `BenchmarkNAT/upgrade
    nat_test.go:89: bench-note nat/upgrade-p50 tether ping -i 25ms, 3 runs
BenchmarkNAT/upgrade-2   	       1	3045850312 ns/op	        74.65 first-pong-p50-ms	      2964 upgrade-p50-ms
BenchmarkNAT/loss-2      	       1	11404443720 ns/op	        92.54 lossless-MB/s	        19.70 lossy-MB/s
PASS
`
	res := newResults()
	if n := parseNAT(out, res); n != 4 {
		t.Fatalf("parsed %d measures, want 4: %+v", n, res.measures)
	}
	for _, tc := range []struct {
		name, unit, better, note string
		value                    float64
	}{
		{"nat/upgrade-p50", "ms", "lower", "tether ping -i 25ms, 3 runs", 2964},
		{"nat/first-pong-p50", "ms", "lower", "", 74.65},
		{"nat/lossless", "MB/s", "higher", "", 92.54},
		{"nat/lossy", "MB/s", "higher", "", 19.70},
	} {
		m, ok := res.get(tc.name)
		if !ok || m.Value != tc.value || m.Unit != tc.unit || m.Better != tc.better || m.Note != tc.note {
			t.Errorf("%s = %+v (found %v); want %v %s %s %q", tc.name, m, ok, tc.value, tc.unit, tc.better, tc.note)
		}
	}
}

func TestBenchfmt(t *testing.T) {
	var b strings.Builder
	writeBenchfmt(&b, record{Commit: "abc", Measures: []measure{
		{Name: "tcp/rtt-p50", Value: 17.5, Unit: "µs"},
		{Name: "coord/n=5000/heap+stack-per-peer", Value: 42, Unit: "KiB"},
	}})
	for _, want := range []string{
		"BenchmarkTcp/rtt-p50 1 17.5 us\n",
		"BenchmarkCoord/n=5000/heap_stack-per-peer 1 42 KiB\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("benchmark format lacks %q:\n%s", want, b.String())
		}
	}
}

// TestTransfer checks the measuring helpers on loopback: a download counts
// what arrived, and round trips come back.
func TestTransfer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	src := serve(ln, source)
	defer src.close()
	mbps, rates, err := measureDownload(ctx, dialTCP(ln.Addr().String()), 50*time.Millisecond, 100*time.Millisecond, 3)
	if err != nil || mbps <= 1 || len(rates) != 3 {
		t.Errorf("download = %.1f MB/s (windows %v), %v; want a positive rate from 3 windows", mbps, rates, err)
	}

	eln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	ech := serve(eln, echo)
	defer ech.close()
	conn, err := net.Dial("tcp", eln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ds, err := roundTrips(conn, 20, rttSize, 10*time.Millisecond)
	if err != nil || len(ds) != 20 {
		t.Fatalf("round trips = %d, %v", len(ds), err)
	}
	if s := summarize(ds); s.Min <= 0 || s.Max > 5*time.Second {
		t.Errorf("round trips out of range: %+v", s)
	}
}

// TestCoalescedUpdates checks the fan-out accounting: an update that a
// newer one superseded in the coordinator's queue counts as delivered when
// the newer one arrives, not as lost.
func TestCoalescedUpdates(t *testing.T) {
	agent := &simPeer{}
	client := &simPeer{agent: agent}
	r := &coordRun{agents: []*simPeer{agent}, clients: []*simPeer{client}}
	t0 := time.Now().Round(0)
	r.startPhase(t0)
	agent.sent = []time.Time{t0, t0.Add(time.Millisecond), t0.Add(2 * time.Millisecond)}

	// The second update arrives first: the first was superseded.
	r.received(client, t0.Add(time.Millisecond), t0.Add(5*time.Millisecond))
	if _, msgs, missing := r.collectNow(); msgs != 1 || missing != 1 {
		t.Fatalf("after the second update: %d messages, %d missing; want 1 and 1", msgs, missing)
	}
	r.received(client, t0.Add(2*time.Millisecond), t0.Add(6*time.Millisecond))
	s, msgs, missing := r.collectNow()
	if msgs != 2 || missing != 0 || s.N != 3 {
		t.Fatalf("after the last update: %d messages, %d missing, %d latencies; want 2, 0, 3", msgs, missing, s.N)
	}
	if s.Max != 5*time.Millisecond || s.Min != 4*time.Millisecond {
		t.Errorf("latencies from %v to %v; want 4 ms (the last two) to 5 ms (the superseded first)", s.Min, s.Max)
	}
}
