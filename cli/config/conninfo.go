package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tetherdev/tether"
)

// connInfoFile keeps the connection info (DERP map and network policy) the
// server last gave, so that the next tunnel can start without waiting for
// it. It is a hint, never trusted alone: the CLI fetches the info again
// at once, compares before anything goes through the tunnel, and starts
// over with the fresh one if it differs.
const connInfoFile = "connection-info.json"

type savedConnInfo struct {
	URL  string                `json:"url"`
	Info tether.ConnectionInfo `json:"info"`
}

// ConnectionInfo returns the connection info saved for the server at url,
// and whether there is one. An unreadable or foreign file is no info.
func (d Dir) ConnectionInfo(url string) (tether.ConnectionInfo, bool) {
	b, err := os.ReadFile(filepath.Join(string(d), connInfoFile))
	if err != nil {
		return tether.ConnectionInfo{}, false
	}
	var s savedConnInfo
	if err := json.Unmarshal(b, &s); err != nil || s.URL != url || s.Info.DERPMap == nil {
		return tether.ConnectionInfo{}, false
	}
	return s.Info, true
}

// SaveConnectionInfo keeps info as the server at url gave it. It does
// nothing where there is no config directory yet (a CLI run with
// TETHER_URL and TETHER_SESSION_TOKEN only).
func (d Dir) SaveConnectionInfo(url string, info tether.ConnectionInfo) error {
	if _, err := os.Stat(string(d)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	b, err := json.Marshal(savedConnInfo{URL: url, Info: info})
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(string(d), connInfoFile), b, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}
