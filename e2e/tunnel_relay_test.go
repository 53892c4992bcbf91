package e2e

import (
	"strings"
	"testing"
)

// TestForceRelay checks that --force-relay keeps a tunnel off the direct
// path and on the server's UDP relay (here on loopback), and that
// --disable-direct still forces DERP.
func TestForceRelay(t *testing.T) {
	env := startWorkspace(t, "--log-level", "debug")
	u := env.User
	_, pongs := timeToPath(t, u, "relay", 3, relayTimeout, "--force-relay")
	for _, p := range pongs {
		if p.Path == "direct" {
			t.Fatalf("a pong came directly with --force-relay: %+v", pongs)
		}
		if p.Path == "relay" && !strings.HasPrefix(p.Endpoint, "127.0.0.1:") {
			t.Errorf("relayed pong %+v, want the relay at 127.0.0.1", p)
		}
	}
	for _, p := range pings(t, u, "-n", "5", "--interval", "200ms", "--disable-direct") {
		if p.Path != "derp" {
			t.Errorf("pong %+v with --disable-direct, want derp", p)
		}
	}
}
