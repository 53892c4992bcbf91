package e2e

// The end-to-end tests build the real binary once and drive real processes
// through internal/harness: a server, agents, and the CLI, each with its
// own config directory.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
	"go.uber.org/goleak"
)

// here runs the binary built for this run on this machine. (The lab tests
// run it in namespaces: see on.)
var here harness.Tether

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		root, err := harness.ModuleRoot()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		bin, err := harness.Build(context.Background(), root, dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "build tether:", err)
			return 1
		}
		here = harness.Tether{Bin: bin}
		return runWithLeakCheck(m)
	}()
	os.Exit(code)
}

func runWithLeakCheck(m *testing.M) int {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			return 1
		}
	}
	return code
}

// api sends a raw request and returns the status and body.
func api(t testing.TB, method, url, token string, body io.Reader, header ...string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Tether-Session-Token", token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
