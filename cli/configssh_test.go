package cli

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

func TestProxyCommandArg(t *testing.T) {
	tests := []struct {
		name, goos, in, want string
	}{
		{"plain Unix path", "linux", "/usr/local/bin/tether", "/usr/local/bin/tether"},
		{"macOS config directory", "darwin", "/Users/me/Library/Application Support/tether", "'/Users/me/Library/Application Support/tether'"},
		{"shell characters", "linux", "/opt/$HOME/`x`/a;b&c", "'/opt/$HOME/`x`/a;b&c'"},
		{"single quote", "linux", "/opt/it's", `'/opt/it'\''s'`},
		{"percent on Unix", "linux", "/opt/100%/tether", "/opt/100%%/tether"},
		{"empty", "linux", "", "''"},
		{"Windows program", "windows", `C:\Program Files\Tether\tether.exe`, `"C:\Program Files\Tether\tether.exe"`},
		{"Windows path without spaces", "windows", `C:\tether\tether.exe`, `"C:\tether\tether.exe"`},
		{"Windows config directory", "windows", `C:\Users\Jane Doe\AppData\Roaming\tether`, `"C:\Users\Jane Doe\AppData\Roaming\tether"`},
		{"Windows trailing backslash", "windows", `D:\`, `"D:\\"`},
		{"Windows percent", "windows", `C:\100%\tether.exe`, `"C:\100%%\tether.exe"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := proxyCommandArg(tc.goos, tc.in); got != tc.want {
				t.Errorf("proxyCommandArg(%s, %q) = %s, want %s", tc.goos, tc.in, got, tc.want)
			}
		})
	}
}

func TestSSHBlockWindows(t *testing.T) {
	block, err := sshBlock("windows", `C:\Users\Jane Doe\bin\tether.exe`, `C:\Users\Jane Doe\AppData\Roaming\tether`)
	if err != nil {
		t.Fatal(err)
	}
	want := `  ProxyCommand "C:\Users\Jane Doe\bin\tether.exe" --config-dir "C:\Users\Jane Doe\AppData\Roaming\tether" ssh --stdio %h` + "\n"
	if !strings.Contains(block, want) {
		t.Errorf("block:\n%s\nwant the line:\n%s", block, want)
	}
	if _, err := sshBlock("linux", "/usr/bin/tether", "/home/me/a\nb"); err == nil {
		t.Error("a config directory with a line break was written into ssh_config")
	}
}

// TestSSHBlockUnderOpenSSH has the real OpenSSH run the block's
// ProxyCommand, with a tether binary and a config directory whose paths
// hold what a shell or OpenSSH's %-tokens would take for their own, and
// checks the arguments the program received.
func TestSSHBlockUnderOpenSSH(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ssh is not installed; .ci/run should have installed openssh-client")
		}
		t.Skip("ssh is not installed (apt-get install openssh-client)")
	}
	dir := filepath.Join(t.TempDir(), `it's 100% $HOME "mine"; a\b`)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The stand-in for tether writes its arguments down and exits, which
	// ends OpenSSH's connection attempt.
	args := filepath.Join(t.TempDir(), "args")
	exe := filepath.Join(dir, "tether")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" >" + proxyCommandArg("linux", args) + "\n"
	if err := os.WriteFile(exe, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	configDir := filepath.Join(dir, "config dir")
	block, err := sshBlock("linux", exe, configDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshBin, "-F", cfg, "-o", "BatchMode=yes", "tether.box", "true")
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	out, _ := cmd.CombinedOutput() // fails: the stand-in speaks no SSH
	got, err := os.ReadFile(args)
	if err != nil {
		t.Fatalf("the ProxyCommand did not run the program (%v); ssh said:\n%s\nblock:\n%s", err, out, block)
	}
	want := []string{"--config-dir", configDir, "ssh", "--stdio", "tether.box"}
	if lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n"); !slices.Equal(lines, want) {
		t.Errorf("the program got the arguments %q, want %q\nblock:\n%s", lines, want, block)
	}
}
