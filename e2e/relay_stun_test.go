package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// Offline deployments turn STUN off. Peers then learn no public address,
// but they publish their local addresses at once (the tunnel does, without
// waiting for a network check that would need 3 s to give up on STUN), so
// peers that reach each other's local addresses still go direct, quickly.
func TestRelaySTUNDisabled(t *testing.T) {
	env := startWorkspace(t, "--stun-addresses", "disable")
	u := env.User

	for code, r := range connectionInfo(t, env.Server, u) {
		for _, n := range r.Nodes {
			if n.STUNOnly || n.STUNPort >= 0 {
				t.Errorf("region %s node %s still offers STUN (port %d)", code, n.Name, n.STUNPort)
			}
		}
	}

	// From a fresh CLI's start to its first direct pong, the CLI needs
	// the agent's local endpoints and the agent the CLI's.
	elapsed, lines := pingUntil(t, u, func(l pingLine) bool { return l.Path == "direct" }, "--interval", "50ms")
	t.Logf("first direct pong %v after the CLI started (pongs: %+v)", elapsed.Round(time.Millisecond), lines)
	if elapsed > 2500*time.Millisecond {
		t.Errorf("the path went direct only after %v: are local endpoints waiting for the network check?", elapsed)
	}

	out := u.Must("netcheck")
	if !strings.Contains(out, "UDP:                  unknown: the server configures no STUN server") {
		t.Errorf("netcheck does not say UDP/STUN is unavailable:\n%s", out)
	}
}

// pingUntil runs `tether ping dev` until a pong satisfies want, and returns
// the time from the command's start to that pong, and the pongs so far.
func pingUntil(t *testing.T, u *harness.User, want func(pingLine) bool, args ...string) (time.Duration, []pingLine) {
	t.Helper()
	began := time.Now()
	p := u.Start("ping", append([]string{"ping", "dev", "--output", "json", "-n", "600"}, args...)...)
	defer p.Kill()
	var lines []pingLine
	deadline := time.After(harness.CommandTimeout)
	for {
		select {
		case l := <-p.Lines():
			pl := parsePings(t, l)[0]
			lines = append(lines, pl)
			if want(pl) {
				return time.Since(began), lines
			}
		case <-p.Done():
			t.Fatalf("ping ended first: %v\n%s", p.Err(), p.Output())
		case <-deadline:
			t.Fatalf("no wanted pong within %s:\n%s", harness.CommandTimeout, p.Output())
		}
	}
}
