// Package config keeps the CLI's credentials between runs: the server URL and
// the session token, as two files in the config directory ($TETHER_CONFIG_DIR,
// default DefaultDir). TETHER_URL and TETHER_SESSION_TOKEN override them.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// Dir is a config directory.
type Dir string

// DefaultDir returns the config directory of this operating system's
// convention; see defaultDir.
func DefaultDir() string {
	return defaultDir(runtime.GOOS, os.Getenv)
}

// defaultDir is where the CLI keeps its files on goos, with getenv reading
// the environment:
//
//   - Linux and other Unix: $XDG_CONFIG_HOME/tether, or ~/.config/tether.
//   - macOS: ~/Library/Application Support/tether.
//   - Windows: %AppData%\tether (AppData\Roaming, which follows the user
//     from machine to machine in a domain, as a login should).
//
// These are os.UserConfigDir's; they are spelled out here, for any goos,
// so that a test on Linux checks the Windows and macOS paths too. It
// falls back to ./.tether when the home directory is unknown.
func defaultDir(goos string, getenv func(string) string) string {
	const name = "tether"
	switch goos {
	case "windows":
		if appData := getenv("AppData"); appData != "" {
			return strings.TrimRight(appData, `\/`) + `\` + name
		}
	case "darwin":
		if home := getenv("HOME"); home != "" {
			return path.Join(home, "Library", "Application Support", name)
		}
	default:
		if xdg := getenv("XDG_CONFIG_HOME"); path.IsAbs(xdg) {
			return path.Join(xdg, name)
		}
		if home := getenv("HOME"); home != "" {
			return path.Join(home, ".config", name)
		}
	}
	return "." + name
}

const (
	urlFile     = "url"
	sessionFile = "session"
)

func (d Dir) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read config: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// URL returns the saved server URL, or "" if none.
func (d Dir) URL() (string, error) { return d.read(urlFile) }

// Session returns the saved session token, or "" if none.
func (d Dir) Session() (string, error) { return d.read(sessionFile) }

// Save writes the server URL and session token, readable only by the user.
func (d Dir) Save(url, session string) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	for name, v := range map[string]string{urlFile: url, sessionFile: session} {
		if err := WriteFileAtomic(filepath.Join(string(d), name), []byte(v+"\n"), 0o600); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	return nil
}

// Forget removes the session token, keeping the URL for the next login.
func (d Dir) Forget() error {
	err := os.Remove(filepath.Join(string(d), sessionFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// WriteFileAtomic replaces path so that readers never see a partial file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
