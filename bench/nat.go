package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// Environment of BenchmarkNAT, set by runNAT (and by hand for `go test
// -bench NAT ./bench`).
const (
	envTether   = "TETHER_BENCH_TETHER"   // the tether binary; built when unset
	envDuration = "TETHER_BENCH_DURATION" // one speedtest window
	envNATRuns  = "TETHER_BENCH_NAT_RUNS" // upgrades timed
)

// natNote is how BenchmarkNAT passes a measure's note through its log.
const natNote = "bench-note"

// buildNATTest builds this package's test binary, which holds
// BenchmarkNAT.
func buildNATTest(ctx context.Context, root, out string) error {
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", out, "./bench")
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the NAT benchmark: %w\n%s", err, b)
	}
	return nil
}

// runNAT runs BenchmarkNAT from the test binary testBin, which needs root
// for its network namespaces, and takes its figures from the benchmark
// output.
func runNAT(ctx context.Context, cfg *config, res *results, root, testBin string) error {
	if os.Geteuid() != 0 {
		res.skipped["nat"] = "the NAT lab needs root (network namespaces, nftables); run the bench as root"
		cfg.logf("nat skipped: not root")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testBin, "-test.run", "^$", "-test.bench", "^BenchmarkNAT$",
		"-test.benchtime", "1x", "-test.v", "-test.timeout", "10m")
	cmd.Dir = filepath.Join(root, "bench")
	cmd.Env = append(os.Environ(),
		envTether+"="+cfg.tether,
		envDuration+"="+cfg.duration.String(),
		envNATRuns+"="+strconv.Itoa(cfg.natRuns))
	out, err := cmd.CombinedOutput()
	parsed := parseNAT(string(out), res)
	if skip := natSkip.FindStringSubmatch(string(out)); skip != nil {
		res.skipped["nat"] = skip[1]
		return nil
	}
	if err != nil {
		return fmt.Errorf("BenchmarkNAT: %w\n%s", err, harness.Tail(string(out), tailLines))
	}
	if parsed == 0 {
		return fmt.Errorf("BenchmarkNAT reported nothing:\n%s", harness.Tail(string(out), tailLines))
	}
	return nil
}

var (
	natSkip      = regexp.MustCompile(`natlab: (cannot build a lab: [^\n]*)`)
	natBenchLine = regexp.MustCompile(`^BenchmarkNAT/(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)
	natNoteLine  = regexp.MustCompile(natNote + ` (\S+) (.*)$`)
)

// parseNAT adds the measures in BenchmarkNAT's output to res and returns how
// many it found. A metric's unit is "<name>-<unit>", e.g. "lossy-MB/s".
func parseNAT(out string, res *results) int {
	notes := map[string]string{}
	var found []measure
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := natNoteLine.FindStringSubmatch(line); m != nil {
			notes[m[1]] = m[2]
			continue
		}
		m := natBenchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			name, unit, ok := cutLast(f[i+1], "-")
			if !ok {
				continue // ns/op and the like
			}
			better := "lower"
			if strings.HasSuffix(unit, "/s") {
				better = "higher"
			}
			found = append(found, measure{Name: "nat/" + name, Value: v, Unit: unit, Better: better})
		}
	}
	for _, m := range found {
		m.Note = notes[m.Name]
		res.add(m)
	}
	return len(found)
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
