package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBuild writes a stand-in binary naming its platform.
func fakeBuild(_ context.Context, goos, goarch, version, out string) error {
	return os.WriteFile(out, []byte("tether "+version+" for "+goos+"/"+goarch+"\n"), 0o755)
}

func TestRelease(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "release")
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"-o", dir, "-version", "v1.2.3"}, &stdout, fakeBuild); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{
		"tether-darwin-arm64", "tether-darwin-arm64.sha256",
		"tether-linux-amd64", "tether-linux-amd64.sha256",
		"tether-linux-arm64", "tether-linux-arm64.sha256",
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("release directory holds %v, want %v", names, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "tether-linux-arm64"))
	if string(b) != "tether v1.2.3 for linux/arm64\n" {
		t.Errorf("tether-linux-arm64 = %q", b)
	}
	// The checksum files are sha256sum's own format.
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sh", "-c", "cat *.sha256 | sha256sum -c -")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
	if got := strings.Count(stdout.String(), "\n"); got != 3 {
		t.Errorf("printed %d lines, want one per binary:\n%s", got, stdout.String())
	}
}

func TestReleaseWindows(t *testing.T) {
	dir := t.TempDir()
	if err := run(t.Context(), []string{"-o", dir, "-platforms", "windows/amd64"}, &bytes.Buffer{}, fakeBuild); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tether-windows-amd64.exe", "tether-windows-amd64.exe.sha256"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}

func TestReleaseFails(t *testing.T) {
	failing := func(context.Context, string, string, string, string) error { return errors.New("exit status 1") }
	tests := []struct {
		name  string
		args  []string
		build builder
		want  string
	}{
		{"no directory", nil, fakeBuild, "usage: go run ./internal/release -o DIR"},
		{"bad platform", []string{"-o", "DIR", "-platforms", "linux-amd64"}, fakeBuild, `-platforms: "linux-amd64" is not OS/ARCH`},
		{"build fails", []string{"-o", "DIR", "-platforms", "linux/amd64"}, failing, "build linux/amd64: exit status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string(nil), tt.args...)
			for i, a := range args {
				if a == "DIR" {
					args[i] = dir
				}
			}
			err := run(t.Context(), args, &bytes.Buffer{}, tt.build)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("a failed release left %v", entries)
			}
		})
	}
}
