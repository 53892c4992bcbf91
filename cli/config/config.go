// Package config keeps the CLI's credentials between runs: the server URL and
// the session token, as two files in the config directory ($TETHER_CONFIG_DIR,
// default ~/.config/tether). TETHER_URL and TETHER_SESSION_TOKEN override them.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir is a config directory.
type Dir string

// DefaultDir returns $XDG_CONFIG_HOME/tether, or ~/.config/tether.
func DefaultDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "tether")
	}
	return filepath.Join(".", ".tether")
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
