package config

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaultDir(t *testing.T) {
	tests := []struct {
		name string
		goos string
		env  map[string]string
		want string
	}{
		{"linux", "linux", map[string]string{"HOME": "/home/me"}, "/home/me/.config/tether"},
		{"linux XDG", "linux", map[string]string{"HOME": "/home/me", "XDG_CONFIG_HOME": "/xdg"}, "/xdg/tether"},
		{"linux relative XDG ignored", "linux", map[string]string{"HOME": "/home/me", "XDG_CONFIG_HOME": "xdg"}, "/home/me/.config/tether"},
		{"freebsd", "freebsd", map[string]string{"HOME": "/usr/home/me"}, "/usr/home/me/.config/tether"},
		{"linux without home", "linux", nil, ".tether"},
		{"macOS", "darwin", map[string]string{"HOME": "/Users/me"}, "/Users/me/Library/Application Support/tether"},
		{"macOS ignores XDG", "darwin", map[string]string{"HOME": "/Users/me", "XDG_CONFIG_HOME": "/xdg"}, "/Users/me/Library/Application Support/tether"},
		{"macOS without home", "darwin", nil, ".tether"},
		{"windows", "windows", map[string]string{"AppData": `C:\Users\Jane Doe\AppData\Roaming`, "HOME": "/ignored"}, `C:\Users\Jane Doe\AppData\Roaming\tether`},
		{"windows trailing separator", "windows", map[string]string{"AppData": `D:\`}, `D:\tether`},
		{"windows without AppData", "windows", map[string]string{"HOME": `C:\Users\me`}, ".tether"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			if got := defaultDir(tc.goos, getenv); got != tc.want {
				t.Errorf("defaultDir(%s) = %q, want %q", tc.goos, got, tc.want)
			}
		})
	}
}
