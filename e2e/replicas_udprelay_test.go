package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// udpRelayStartedRE matches a server's log line with its UDP relay's
// addresses.
var udpRelayStartedRE = regexp.MustCompile(`UDP relay started.* addresses="?\[([^\]]+)\]`)

// TestReplicasUDPRelay puts the agent on one replica and the CLI on the
// other, with a UDP relay on only one of them: whichever replica runs it,
// its relay must learn of the pair (the agent from one coordinator, the
// client from the other, over PostgreSQL) and relay their path.
func TestReplicasUDPRelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		// onAgent runs the relay on the agent's replica (else on the
		// CLI's).
		onAgent bool
	}{
		{"relay on the agent's replica", true},
		{"relay on the client's replica", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := postgresURL(t)
			relayOn := func(on bool) string {
				if on {
					return "" // the harness's default: a free loopback port
				}
				return "disable"
			}
			cliSide := here.StartServerWith(t, harness.ServerOptions{Args: []string{"--postgres-url", pg}, UDPRelay: relayOn(!tc.onAgent)})
			agentSide := here.StartServerWith(t, harness.ServerOptions{Args: []string{"--postgres-url", pg}, UDPRelay: relayOn(tc.onAgent)})
			relaySide := cliSide
			if tc.onAgent {
				relaySide = agentSide
			}
			// Printed before the server serves, so it is in its output.
			m := udpRelayStartedRE.FindStringSubmatch(relaySide.Output())
			if m == nil {
				t.Fatalf("the relay's replica did not log its UDP relay's address:\n%s", harness.Tail(relaySide.Output(), 20))
			}
			relayAddr := strings.Fields(m[1])[0]

			u := here.Admin(t, cliSide.URL)
			token, _ := u.CreateWorkspace("dev")
			here.StartAgent(t, agentSide.URL, token)
			harness.WaitFor(t, harness.StatusTimeout, "agent connected (to the other replica)", func() bool { return u.AgentStatus("dev") == "connected" })

			took, pongs := timeToPath(t, u, "relay", 3, relayTimeout, "--force-relay")
			for _, p := range pongs {
				if p.Path == "relay" && p.Endpoint != relayAddr {
					t.Errorf("relayed pong %+v, want it through the only UDP relay, %s", p, relayAddr)
				}
			}
			t.Logf("FIGURE %s: on the UDP relay %s after the first pong (first path %s)", tc.name, took.Round(time.Millisecond), pongs[0].Path)
			if r := u.Run("ssh", "dev", "--force-relay", "--log-level", "debug", "--", "echo", "over-the-relay"); !strings.Contains(r.Stdout, "over-the-relay") {
				t.Errorf("ssh over the UDP relay across replicas: %q\n%s", r.Stdout, harness.Tail(r.Stderr, 200))
			}
		})
	}
}
