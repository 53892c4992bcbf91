package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli/config"
)

// The block that config-ssh manages in ~/.ssh/config. Everything outside the
// markers is the user's and is never touched.
const (
	sshBlockStart = "# ------------ START TETHER ------------"
	sshBlockEnd   = "# ------------ END TETHER --------------"
	sshHostPrefix = "tether."
)

func (r *root) configSSHCommand() *cobra.Command {
	var (
		file   string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "config-ssh",
		Short: "Let OpenSSH (and VS Code, JetBrains) reach workspaces as `ssh tether.WORKSPACE`",
		Long: "Write a `Host tether.*` block to ~/.ssh/config whose ProxyCommand is `tether ssh --stdio`,\n" +
			"so that `ssh tether.WORKSPACE`, scp, sftp and editors' remote SSH reach your workspaces.\n" +
			"Running it again replaces only that block; the rest of the file is left as it is.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("find home directory: %w (pass --ssh-config-file)", err)
				}
				file = filepath.Join(home, ".ssh", "config")
			}
			if _, err := r.client(); err != nil {
				return err // the ProxyCommand would fail the same way
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the tether binary: %w", err)
			}
			old, err := os.ReadFile(file)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read %s: %w", file, err)
			}
			block, err := sshBlock(runtime.GOOS, exe, r.configDir)
			if err != nil {
				return err
			}
			updated, err := replaceSSHBlock(old, block)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if dryRun {
				fmt.Fprintf(r.env.Stdout, "Would write this block to %s:\n\n%s", file, block)
				return nil
			}
			if bytes.Equal(old, updated) {
				fmt.Fprintf(r.env.Stdout, "%s is up to date.\n", file)
				return nil
			}
			if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
				return err
			}
			if err := config.WriteFileAtomic(file, updated, 0o600); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			fmt.Fprintf(r.env.Stdout, "Updated %s: connect with `ssh %sWORKSPACE`.\n", file, sshHostPrefix)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "ssh-config-file", "", "OpenSSH config file to update (default ~/.ssh/config)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the block instead of writing it")
	return cmd
}

// sshBlock renders the managed block for an OpenSSH on goos. Host keys are
// not checked because the tunnel already authenticates the agent by its
// WireGuard key, and the agent's SSH host key may change when it restarts.
// /dev/null is the null device for Windows' OpenSSH too.
func sshBlock(goos, exe, configDir string) (string, error) {
	for _, p := range []string{exe, configDir} {
		if strings.ContainsAny(p, "\r\n") {
			return "", fmt.Errorf("%q has a line break, which an ssh_config line cannot hold: move it, or pass --config-dir", p)
		}
	}
	var b strings.Builder
	fmt.Fprintln(&b, sshBlockStart)
	fmt.Fprintln(&b, "# Managed by `tether config-ssh`: edits between these markers are replaced.")
	fmt.Fprintf(&b, "Host %s*\n", sshHostPrefix)
	fmt.Fprintf(&b, "  ProxyCommand %s --config-dir %s ssh --stdio %%h\n", proxyCommandArg(goos, exe), proxyCommandArg(goos, configDir))
	fmt.Fprintln(&b, "  ConnectTimeout 0")
	fmt.Fprintln(&b, "  StrictHostKeyChecking no")
	fmt.Fprintln(&b, "  UserKnownHostsFile /dev/null")
	fmt.Fprintln(&b, "  LogLevel ERROR")
	fmt.Fprintln(&b, sshBlockEnd)
	return b.String(), nil
}

// proxyCommandArg writes s (a path) as one word of a ProxyCommand, which
// OpenSSH hands on in two different ways. First it expands %-tokens in the
// whole line, so a % of the path is doubled. Then:
//
//   - On Unix, it runs `$SHELL -c "exec LINE"`: a path with anything but
//     plain characters is single-quoted, the only quoting in which sh (and
//     bash, zsh, fish) take everything but ' literally.
//   - Windows' own OpenSSH passes the line to CreateProcess, whose program
//     then splits it by the C runtime's rules (Go's os.Args does too),
//     where a backslash is literal unless it comes before a quote. Every
//     path is double-quoted: Windows paths are full of spaces (a user
//     named Jane Doe, Program Files) and backslashes, and quoted they also
//     survive the sh -c of Git for Windows' ssh (all but a UNC path's
//     leading \\). Backslashes before the closing quote (a config
//     directory D:\) are doubled, so that they do not escape it; a
//     Windows path cannot contain a quote.
func proxyCommandArg(goos, s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if goos == "windows" {
		trailing := len(s) - len(strings.TrimRight(s, `\`))
		return `"` + s + strings.Repeat(`\`, trailing) + `"`
	}
	plain := func(r rune) bool {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("/._-+:,@%=", r)
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !plain(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// replaceSSHBlock puts block in place of the existing managed block, or at
// the top of the file (so that it wins over later wildcard Hosts) if there
// is none.
func replaceSSHBlock(old []byte, block string) ([]byte, error) {
	s := string(old)
	start := strings.Index(s, sshBlockStart)
	end := strings.Index(s, sshBlockEnd)
	switch {
	case start < 0 && end < 0:
		if s == "" {
			return []byte(block), nil
		}
		return []byte(block + "\n" + s), nil
	case start < 0 || end < start || strings.Count(s, sshBlockStart) > 1 || strings.Count(s, sshBlockEnd) > 1:
		return nil, errors.New("the tether block's markers are damaged: fix or remove them by hand, then run config-ssh again")
	}
	end += len(sshBlockEnd)
	if strings.HasPrefix(s[end:], "\r\n") { // edited by a Windows editor
		end += 2
	} else if strings.HasPrefix(s[end:], "\n") {
		end++
	}
	return []byte(s[:start] + block + s[end:]), nil
}
