package tsgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/tsgen"
	"github.com/tetherdev/tether/internal/tsgen/testdata/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.ts with what the generator writes")

// genTimeout bounds go list, which may compile the fixture's dependencies.
const genTimeout = 3 * time.Minute

// TestGenerate translates a fixture with one of each kind of field and
// compares the result with testdata/wire.ts.
func TestGenerate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), genTimeout)
	defer cancel()
	got, err := tsgen.Generate(ctx, filepath.Join("testdata", "wire"))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "wire.ts")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("generated\n%s\nwant (%s)\n%s", got, golden, want)
	}
}

func TestGenerateRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), genTimeout)
	defer cancel()
	tests := []struct {
		name, dir, want string
	}{
		{"a field JSON cannot carry", filepath.Join("testdata", "bad"), "type Stream: field C: cannot describe chan int"},
		{"no package", t.TempDir(), "go list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tsgen.Generate(ctx, tt.dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate(%s) = %d bytes, %v; want an error mentioning %q", tt.dir, len(out), err, tt.want)
			}
		})
	}
}

// TestAgreesWithEncodingJSON checks the generator's rules against
// encoding/json itself: a zero wire.Item has exactly the fields that the
// declaration (with its base's) says are always there.
func TestAgreesWithEncodingJSON(t *testing.T) {
	b, err := json.Marshal(wire.Item{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var sent []string
	for k := range m {
		sent = append(sent, k)
	}
	slices.Sort(sent)

	ts, err := os.ReadFile(filepath.Join("testdata", "wire.ts"))
	if err != nil {
		t.Fatal(err)
	}
	required := append(requiredFields(t, ts, "Base"), requiredFields(t, ts, "Item")...)
	slices.Sort(required)
	if !slices.Equal(sent, required) {
		t.Errorf("encoding/json sends %v for a zero Item; the declaration requires %v", sent, required)
	}
}

// requiredFields lists the fields of interface name in ts that are not
// optional.
func requiredFields(t *testing.T, ts []byte, name string) []string {
	t.Helper()
	decl := regexp.MustCompile(`(?s)export interface ` + name + `\b[^{]*\{\n(.*?)\n\}`).FindSubmatch(ts)
	if decl == nil {
		t.Fatalf("no interface %s", name)
	}
	var fields []string
	for _, m := range regexp.MustCompile(`(?m)^  ("[^"]+"|\w+)(\??):`).FindAllSubmatch(decl[1], -1) {
		if len(m[2]) == 0 {
			fields = append(fields, strings.Trim(string(m[1]), `"`))
		}
	}
	return fields
}
