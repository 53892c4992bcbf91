package main

// The end-to-end tests of the binary are package e2e's. These check main
// itself, by running this test binary as tether: that it wires the
// server command in beside the CLI's and exits with their status.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
	"go.uber.org/goleak"
)

// runMainEnv makes the test binary run main instead of the tests.
const runMainEnv = "TETHER_CMD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main() // exits
	}
	goleak.VerifyTestMain(m)
}

func TestMainCommands(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		stdout   string // in stdout
		stderr   string // in stderr
		noStderr bool
	}{
		{"version", []string{"--version"}, 0, "tether version ", "", true},
		{"help lists the server", []string{"--help"}, 0, "Run the Tether control plane", "", true},
		{"server help", []string{"server", "--help"}, 0, "--access-url", "", true},
		{"CLI command help", []string{"ssh", "--help"}, 0, "--disable-direct", "", true},
		{"version command", []string{"version"}, 0, "commit:", "", true},
		{"completion", []string{"completion", "bash"}, 0, "__start_tether", "", true},
		{"unknown command", []string{"frobnicate"}, 1, "", `unknown command "frobnicate"`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), harness.CommandTimeout)
			defer cancel()
			cmd := harness.Tether{Bin: exe}.Cmd(ctx, []string{runMainEnv + "=1", "HOME=" + t.TempDir()}, tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) ||
				tc.noStderr && stderr.Len() > 0 || strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("tether %s: exit %d\nstdout: %s\nstderr: %s\nwant exit %d, %q in stdout and %q in stderr",
					strings.Join(tc.args, " "), code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
		})
	}
}
