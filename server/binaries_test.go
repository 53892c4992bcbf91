package server

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// binariesFixture is a server whose own binary is own, with a binaries
// directory holding files.
func binariesFixture(t *testing.T, own []byte, files map[string]string) *fixture {
	t.Helper()
	tmp := t.TempDir()
	ownPath := filepath.Join(tmp, "tether")
	if err := os.WriteFile(ownPath, own, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "release")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return newFixture(t, fixtureOptions{edit: func(o *Options) {
		o.AgentBinary, o.AgentBinariesDir = ownPath, dir
	}})
}

func TestServeBinaries(t *testing.T) {
	own := []byte("the server's own build\n")
	ownName := binaryName(runtime.GOOS, runtime.GOARCH)
	arm := "an arm64 build\n"
	otherOS := "linux"
	if runtime.GOOS == "linux" {
		otherOS = "freebsd"
	}
	f := binariesFixture(t, own, map[string]string{
		"tether-" + otherOS + "-riscv64":        arm,
		"tether-" + otherOS + "-riscv64.sha256": sha256Hex([]byte(arm)) + "  tether-" + otherOS + "-riscv64\n",
		"tether-darwin-mips":                    "half a cop",
		"tether-darwin-mips.sha256":             sha256Hex([]byte("half a copy\n")) + "  tether-darwin-mips\n",
		"tether-plan9-386":                      "no checksum beside it",
		// Even in the directory, the server's own platform is its own build.
		ownName: "an older build",
	})
	tests := []struct {
		name       string
		path       string
		wantStatus int
		wantBody   string // exactly, or a part of an error
	}{
		{"own binary", "/bin/" + ownName, 200, string(own)},
		{"own checksum", "/bin/" + ownName + ".sha256", 200, sha256Hex(own) + "  " + ownName + "\n"},
		{"directory binary", "/bin/tether-" + otherOS + "-riscv64", 200, arm},
		{"directory checksum", "/bin/tether-" + otherOS + "-riscv64.sha256", 200, sha256Hex([]byte(arm)) + "  tether-" + otherOS + "-riscv64\n"},
		{"checksum computed when none beside it", "/bin/tether-plan9-386.sha256", 200, sha256Hex([]byte("no checksum beside it")) + "  tether-plan9-386\n"},
		{"damaged binary", "/bin/tether-darwin-mips", 500, "does not match its checksum"},
		{"damaged binary's checksum", "/bin/tether-darwin-mips.sha256", 500, "does not match its checksum"},
		{"unknown platform", "/bin/tether-windows-arm64.exe", 404,
			"this server has no agent binary for windows/arm64; it has " + strings.Join(sorted("tether-"+otherOS+"-riscv64", "tether-darwin-mips", ownName, "tether-plan9-386"), ", ") + ". Its operator can add binaries with --agent-binaries-dir"},
		{"not a binary's name", "/bin/install.sh", 404, "agent binaries are at /bin/tether-OS-ARCH"},
		{"traversal", "/bin/tether-..%2f..%2fetc-passwd", 404, "agent binaries are at /bin/tether-OS-ARCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(req{method: "GET", path: tt.path})
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s: %d, want %d: %s", tt.path, resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == 200 && body != tt.wantBody || tt.wantStatus != 200 && !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s = %q, want %q", tt.path, body, tt.wantBody)
			}
			if tt.wantStatus != 200 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s: error as %s, want plain text for curl and the install script", tt.path, resp.Header.Get("Content-Type"))
			}
		})
	}
}

// TestServeOwnBinaryAfterReplace: an upgrade renames a new binary over the
// running one; until the server restarts, it keeps serving the build that
// runs, with the matching checksum.
func TestServeOwnBinaryAfterReplace(t *testing.T) {
	tmp := t.TempDir()
	path := filepath.Join(tmp, "tether")
	own := []byte("running build")
	if err := os.WriteFile(path, own, 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{edit: func(o *Options) { o.AgentBinary = path }})
	next := filepath.Join(tmp, "tether.new")
	if err := os.WriteFile(next, []byte("next build, not running yet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	name := binaryName(runtime.GOOS, runtime.GOARCH)
	if _, body := f.do(req{method: "GET", path: "/bin/" + name}); body != string(own) {
		t.Errorf("binary = %q, want the running build %q", body, own)
	}
	if _, body := f.do(req{method: "GET", path: "/bin/" + name + ".sha256"}); !strings.HasPrefix(body, sha256Hex(own)) {
		t.Errorf("checksum = %q, want the running build's %s", body, sha256Hex(own))
	}
	// HEAD and ranges work, for download tools that resume.
	resp, body := f.do(req{method: "GET", path: "/bin/" + name, header: http.Header{"Range": {"bytes=8-"}}})
	if resp.StatusCode != http.StatusPartialContent || body != "build" {
		t.Errorf("range: %d %q, want 206 \"build\"", resp.StatusCode, body)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestNewRefusesMissingBinariesDir(t *testing.T) {
	_, err := newAgentBinaries(nil, "", filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "open the agent binaries directory") {
		t.Errorf("err = %v, want it to name the agent binaries directory", err)
	}
}
