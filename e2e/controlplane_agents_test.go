package e2e

import (
	"strings"
	"syscall"
	"testing"

	"github.com/tetherdev/tether/internal/harness"
)

// The agents of these tests tell themselves apart by AGENT_MARKER, which
// their ssh sessions inherit.
func startMarkedAgent(t *testing.T, name, url, token, marker string) *harness.Proc {
	t.Helper()
	return here.Start(t, name, []string{"TETHER_AGENT_TOKEN=" + token, "AGENT_MARKER=" + marker}, "agent", "--url", url)
}

// sshMarker returns the marker of the agent that answers ssh to dev.
func sshMarker(t *testing.T, u *harness.User) string {
	t.Helper()
	return strings.TrimSpace(u.Must("ssh", "dev", "--", "printenv", "AGENT_MARKER"))
}

// refusedLine is what an agent logs each time the server refuses it
// because another agent holds its workspace.
const refusedLine = "the server refused this agent: another agent is already connected for workspace alice/dev"

// TestDuplicateAgentRefused starts a second agent with a workspace's token
// while the first runs, as on a cloned VM: the second is refused, says
// why and what to do, and keeps waiting; the first keeps its place without
// a single reconnect (the old behaviour: the two replaced each other every
// few seconds, logging only "EOF"). When the first leaves, the second
// takes over.
func TestDuplicateAgentRefused(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	first := startMarkedAgent(t, "agent-1", agentURL, token, "one")
	harness.WaitFor(t, harness.StatusTimeout, "the first agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	second := startMarkedAgent(t, "agent-2", agentURL, token, "two")
	harness.WaitFor(t, harness.StatusTimeout, "the second agent to say it is refused", func() bool { return strings.Contains(second.Output(), refusedLine) })
	if out := second.Output(); !strings.Contains(out, "Stop the other agent") || !strings.Contains(out, "create a workspace for it") {
		t.Errorf("the refused agent does not say what to do:\n%s", out)
	}
	if !strings.Contains(srv.Output(), "refused a second agent for the workspace") {
		t.Errorf("the server does not log the refusal:\n%s", srv.Output())
	}
	// It tries again later, and is refused again; the first agent is
	// never disturbed.
	harness.WaitFor(t, 2*harness.StatusTimeout, "the second agent's second refusal", func() bool { return strings.Count(second.Output(), refusedLine) >= 2 })
	if m := sshMarker(t, u); m != "one" {
		t.Errorf("ssh reached agent %q, want the first one", m)
	}
	if n := strings.Count(srv.Output(), `msg="agent connected"`); n != 1 {
		t.Errorf("the server logged %d agent connections, want 1 (no flapping)", n)
	}
	if strings.Contains(first.Output(), "coordinator connection failed") {
		t.Errorf("the first agent lost its connection:\n%s", first.Output())
	}

	// The first one leaves: the second takes its place at its next try.
	first.Stop()
	harness.WaitFor(t, 2*harness.StatusTimeout, "the second agent takes over", func() bool {
		return strings.Contains(second.Output(), "took its place") && u.AgentStatus("dev") == "connected"
	})
	if m := sshMarker(t, u); m != "two" {
		t.Errorf("ssh reached agent %q after the first left, want the second", m)
	}
}

// TestAgentRestartReplacesDeadConnection is the legitimate case: the
// agent's machine restarts while the server still holds its old
// connection, which looks open but answers nothing (here: the old agent
// process is frozen). The new agent takes over within seconds, without
// being refused; the old one, when it wakes, is the one refused.
func TestAgentRestartReplacesDeadConnection(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	old := startMarkedAgent(t, "agent-old", agentURL, token, "old")
	harness.WaitFor(t, harness.StatusTimeout, "the first agent connected", func() bool { return u.AgentStatus("dev") == "connected" })
	if err := syscall.Kill(-old.Cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thaw := func() { syscall.Kill(-old.Cmd.Process.Pid, syscall.SIGCONT) }
	t.Cleanup(thaw)

	restarted := startMarkedAgent(t, "agent-new", agentURL, token, "new")
	harness.WaitFor(t, harness.StatusTimeout, "the server to replace the frozen agent's connection", func() bool {
		return strings.Contains(srv.Output(), "replacing the workspace's agent connection: it did not answer a ping")
	})
	if m := sshMarker(t, u); m != "new" {
		t.Errorf("ssh reached agent %q, want the restarted one", m)
	}
	if strings.Contains(restarted.Output(), refusedLine) {
		t.Errorf("the restarted agent was refused:\n%s", restarted.Output())
	}

	thaw()
	harness.WaitFor(t, harness.StatusTimeout, "the old agent, awake, to be refused", func() bool { return strings.Contains(old.Output(), refusedLine) })
	if m := sshMarker(t, u); m != "new" {
		t.Errorf("ssh reached agent %q after the old one woke, want the restarted one", m)
	}
}
