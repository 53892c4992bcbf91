package site

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/tsgen"
)

// generateTimeout bounds go list, which may compile the root package's
// dependencies.
const generateTimeout = 3 * time.Minute

// TestTypesUpToDate regenerates the dashboard's API types from the Go
// package tether and checks that src/tether.gen.ts is exactly that, so that
// the dashboard is never compiled against shapes the server does not send.
func TestTypesUpToDate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), generateTimeout)
	defer cancel()
	want, err := tsgen.Generate(ctx, "..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("src/tether.gen.ts")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("src/tether.gen.ts is stale: run `go generate ./site`, then `npm run build` in site/, and commit both")
	}
}
