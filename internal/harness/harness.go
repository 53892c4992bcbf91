// Package harness runs the real tether binary for the end-to-end tests
// (package e2e) and the benchmarks (bench): servers, agents and CLI
// commands as processes of their own, on this machine or inside a
// network namespace of the NAT lab, with their output captured, the users
// who drive them, and waits that always have a deadline.
//
// It does not import testing, so that bench, a command, can use it too.
// Its functions report through T, the part of testing.TB they need:
// tests pass their *testing.T; bench implements T for itself. Like
// testing's, T's Fatalf must be called only from the goroutine that runs
// the test (or the bench's part).
//
// Every process starts from a clean environment (CleanEnv): no TETHER_
// variable of the developer's shell reaches it. Each runs in its own
// process group and is killed, with everything it started, when the test
// ends; its output goes to the test's log if the test failed.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// T is what the harness needs of a test. testing.TB satisfies it.
type T interface {
	Helper()
	// Context ends when the test does (or the bench is interrupted); no
	// wait of the harness outlives it.
	Context() context.Context
	Cleanup(func())
	TempDir() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
}

// Timeouts shared by the tests. They are generous because CI runs on two
// loaded cores; tests wait on conditions, never on these durations.
const (
	StartTimeout   = 30 * time.Second // a process becomes ready
	StatusTimeout  = 20 * time.Second // a status change shows in the API
	CommandTimeout = 60 * time.Second // one CLI command finishes
)

// Commander makes the command that runs a program: exec.CommandContext on
// this machine, or natlab's Host.Command inside a namespace.
type Commander func(ctx context.Context, name string, args ...string) *exec.Cmd

// CleanEnv is the environment every process starts from: this process's,
// without the TETHER_ variables of the developer's shell.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TETHER_") {
			env = append(env, kv)
		}
	}
	return env
}

// WaitFor polls cond until it holds, failing the test if it does not
// within timeout.
func WaitFor(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if err := t.Context().Err(); err != nil {
			t.Fatalf("gave up waiting for %s: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Build builds the tether binary of the module at root (see ModuleRoot)
// into dir and returns its path.
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "tether")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tether")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/tether: %w\n%s", err, out)
	}
	return bin, nil
}

// ModuleRoot finds the directory of Tether's go.mod from the working
// directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/tetherdev/tether\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tether module: run from its checkout")
		}
		dir = parent
	}
}
