package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Targets are the systems tether ships for: the CLI on developers'
// laptops (macOS, Windows, Linux), the agent in workspaces and the server
// on Linux and macOS, each on amd64 and arm64. The server offers each
// target's binary at /bin/tether-OS-ARCH.
var targets = []struct{ goos, goarch string }{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// crossBuildTimeout bounds the whole test, short of go test's own
// -timeout: six targets compiled from a cold cache on two cores take about
// two minutes each.
const crossBuildTimeout = 25 * time.Minute

// TestCrossBuild builds tether for every target and runs go vet there on
// each of this module's packages that the binary links, with their tests,
// so that a Linux-only call in the CLI, or in a test of its packages,
// fails here rather than on a user's laptop. No test of another system
// runs: CI has only Linux. -short skips it.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: cross-compiling six targets takes minutes")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to cross-compile: %v", err)
	}
	deadline := time.Now().Add(crossBuildTimeout)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second) // fail with a message, not go test's panic
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	defer cancel()
	for _, tg := range targets {
		t.Run(tg.goos+"/"+tg.goarch, func(t *testing.T) {
			start := time.Now()
			defer func() { t.Logf("built and vetted in %s", time.Since(start).Round(time.Second)) }()
			// Cgo stays as go test has it: off for other systems, and on
			// this one as the rest of the suite built it, so its cache serves.
			env := append(os.Environ(), "GOOS="+tg.goos, "GOARCH="+tg.goarch)
			run := func(args ...string) string {
				t.Helper()
				cmd := exec.CommandContext(ctx, goBin, args...)
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				if ctx.Err() != nil {
					t.Fatalf("GOOS=%s GOARCH=%s go %s: gave up at the deadline of all targets (go test -timeout)", tg.goos, tg.goarch, strings.Join(args, " "))
				}
				if err != nil {
					t.Fatalf("GOOS=%s GOARCH=%s go %s: %v\n%s", tg.goos, tg.goarch, strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			bin := filepath.Join(t.TempDir(), "tether")
			run("build", "-o", bin, ".")

			const mod = "github.com/tetherdev/tether"
			var pkgs []string
			for _, p := range strings.Fields(run("list", "-deps", ".")) {
				if p == mod || strings.HasPrefix(p, mod+"/") {
					pkgs = append(pkgs, p)
				}
			}
			if tg.goos == "windows" {
				// This package's own tests drive the binary through the
				// end-to-end harness, which manages Unix process groups.
				pkgs = slices.DeleteFunc(pkgs, func(p string) bool { return p == mod+"/cmd/tether" })
			}
			run(append([]string{"vet"}, pkgs...)...)
		})
	}
}
