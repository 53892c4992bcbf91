package tether_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fuzz targets guard every decoder of untrusted input (issue 10). Each one
// runs over its committed corpus, testdata/fuzz/FuzzXxx in its package, in
// every plain `go test`. With TETHER_FUZZ_SECONDS set (.ci/run sets it),
// TestFuzzTargets also fuzzes each target for that many seconds, one at a
// time, so that CI explores a little beyond the corpus on every run while
// .ci/run keeps running the one test command the README gives. To fuzz
// longer, see the README ("Tests").

// fuzzEnv is the number of seconds to fuzz each target for.
const fuzzEnv = "TETHER_FUZZ_SECONDS"

var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(f \*testing\.F\)`)

// fuzzTarget is one fuzz target: its name and its package's directory,
// relative to the module's root.
type fuzzTarget struct{ name, dir string }

// findFuzzTargets lists the module's fuzz targets, by reading the test
// files, so that a new target is covered without being listed anywhere.
func findFuzzTargets(t *testing.T) []fuzzTarget {
	t.Helper()
	var targets []fuzzTarget
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllSubmatch(b, -1) {
			targets = append(targets, fuzzTarget{name: string(m[1]), dir: filepath.Dir(p)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

// TestFuzzTargets checks that every fuzz target has a committed corpus,
// and with TETHER_FUZZ_SECONDS fuzzes each for that long.
func TestFuzzTargets(t *testing.T) {
	targets := findFuzzTargets(t)
	if len(targets) == 0 {
		t.Fatal("found no fuzz targets")
	}
	for _, ft := range targets {
		entries, err := os.ReadDir(filepath.Join(ft.dir, "testdata", "fuzz", ft.name))
		if err != nil || len(entries) == 0 {
			t.Errorf("%s in %s has no committed corpus in testdata/fuzz/%s: fuzz it (see the README) and commit what it found", ft.name, ft.dir, ft.name)
		}
	}

	raw := os.Getenv(fuzzEnv)
	if raw == "" {
		t.Skipf("set %s=N to fuzz each of the %d targets for N seconds", fuzzEnv, len(targets))
	}
	secs, err := strconv.Atoi(raw)
	if err != nil || secs <= 0 {
		t.Fatalf("%s=%q: want a number of seconds", fuzzEnv, raw)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("fuzzing needs the go command: %v", err)
	}
	// Leave the test binary's own deadline some room to report.
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-30*time.Second))
		defer cancel()
	}
	for _, ft := range targets {
		// One subtest per target, run one after another: -run
		// TestFuzzTargets/FuzzParse fuzzes only that one.
		t.Run(ft.name, func(t *testing.T) {
			corpus := filepath.Join(ft.dir, "testdata", "fuzz", ft.name)
			for attempt := 1; ; attempt++ {
				start := time.Now()
				before := corpusFiles(t, corpus)
				cmd := exec.CommandContext(ctx, goBin, "test", "-run", "^$", "-fuzz", "^"+ft.name+"$",
					"-fuzztime", strconv.Itoa(secs)+"s", "-parallel", "1", "./"+filepath.ToSlash(ft.dir))
				out, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("fuzzing %s did not finish before the test's deadline; raise go test's -timeout or lower %s", ft.name, fuzzEnv)
				}
				if err != nil && attempt < fuzzAttempts && shutdownRace(out, before, corpusFiles(t, corpus)) {
					t.Logf("fuzzing %s ended in Go's shutdown race (go.dev/issue/75804: \"context deadline exceeded\" as -fuzztime ends, no input saved); again", ft.name)
					continue
				}
				if err != nil {
					t.Fatalf("fuzzing %s (%s) failed: %v\n%s\nthe failing input is in %s: fix the bug and keep the input as a regression test",
						ft.name, ft.dir, err, out, corpus)
				}
				t.Logf("fuzzed %s in %s for %ds (%v with the build)", ft.name, ft.dir, secs, time.Since(start).Round(time.Second))
				return
			}
		})
	}
}

// fuzzAttempts is how many times a target is fuzzed when it ends in Go's
// shutdown race rather than on an input.
const fuzzAttempts = 3

// shutdownRace reports whether a failed fuzzing run is Go's own race at
// the end of -fuzztime (go.dev/issue/75804, fixed in Go 1.27; our
// toolchain is older): the coordinator reports the deadline it set
// itself, "context deadline exceeded", as the target's failure, and saves
// no input. A run that saved an input, or said anything else, failed for
// real.
func shutdownRace(out []byte, before, after map[string]bool) bool {
	for name := range after {
		if !before[name] {
			return false
		}
	}
	return bytes.Contains(out, []byte("\n    context deadline exceeded\n")) && !bytes.Contains(out, []byte("Failing input written"))
}

// corpusFiles returns the names of the files in a target's corpus folder.
func corpusFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read %s: %v", dir, err)
	}
	names := make(map[string]bool, len(entries))
	for _, e := range entries {
		names[e.Name()] = true
	}
	return names
}

func TestShutdownRace(t *testing.T) {
	race := "fuzz: elapsed: 10s, execs: 131659 (15843/sec), new interesting: 8 (total: 120)\n--- FAIL: FuzzDirect (10.04s)\n    context deadline exceeded\nFAIL\n"
	crash := "--- FAIL: FuzzDirect (0.20s)\n    --- FAIL: FuzzDirect (0.00s)\n        direct_fuzz_test.go:40: bad\n\n    Failing input written to testdata/fuzz/FuzzDirect/abc\n"
	corpus := map[string]bool{"seed": true}
	for _, c := range []struct {
		name          string
		out           string
		before, after map[string]bool
		want          bool
	}{
		{"the race, nothing saved", race, corpus, corpus, true},
		{"the race's message, but an input saved", race, corpus, map[string]bool{"seed": true, "abc": true}, false},
		{"a crasher", crash, corpus, map[string]bool{"seed": true, "abc": true}, false},
		{"a crasher whose file is not seen", crash, corpus, corpus, false},
		{"a build error", "ptyproto/x.go:1: syntax error\nFAIL\n", corpus, corpus, false},
	} {
		if got := shutdownRace([]byte(c.out), c.before, c.after); got != c.want {
			t.Errorf("%s: shutdownRace = %v, want %v", c.name, got, c.want)
		}
	}
}
