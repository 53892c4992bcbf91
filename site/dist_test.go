package site

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// buildTimeout bounds npm ci (a download of a few MB) plus the build.
const buildTimeout = 8 * time.Minute

// TestDistUpToDate rebuilds the dashboard from its sources in a temporary
// copy and checks that the committed dist/ is exactly what they produce,
// so that nobody ships sources and an embedded build that disagree. It
// needs npm and the npm registry, so it runs only when asked.
func TestDistUpToDate(t *testing.T) {
	if os.Getenv("TETHER_SITE_CHECK") != "1" {
		t.Skip("set TETHER_SITE_CHECK=1 (with npm on PATH) to rebuild the dashboard and compare it with dist/")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not on PATH; cannot rebuild the dashboard")
	}
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()

	work := t.TempDir()
	if err := copySources(".", work); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ci", "--no-audit", "--no-fund"},
		{"test"},
		{"run", "build"},
	} {
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("npm %v: %v\n%s", args, err, out)
		}
	}

	want, err := readTree(filepath.Join(work, "dist"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readTree("dist")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(want) {
		b, ok := got[name]
		switch {
		case !ok:
			t.Errorf("dist/%s is missing: run `npm run build` in site/ and commit dist/", name)
		case !bytes.Equal(b, want[name]):
			t.Errorf("dist/%s differs from what the sources build: run `npm run build` in site/ and commit dist/", name)
		}
	}
	for _, name := range sortedKeys(got) {
		if _, ok := want[name]; !ok {
			t.Errorf("dist/%s is not produced by the sources any more: run `npm run build` in site/ and commit dist/", name)
		}
	}
}

// copySources copies the front end's sources, leaving out installed
// packages and build output.
func copySources(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "node_modules", "dist", ".dev", ".test-out":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}

func readTree(root string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	return files, err
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
