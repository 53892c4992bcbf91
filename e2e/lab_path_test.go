package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// Ports where port-forward listens in the client's namespace.
const (
	labForwardTCP = 9000
	labForwardUDP = 9001
)

var pressCtrlC = regexp.MustCompile(`Press Ctrl\+C`)

// startForward runs `tether port-forward` on the client from labForwardTCP
// to a TCP echo server in the workspace, and, with udp, from labForwardUDP
// to a UDP echo server.
func startForward(t *testing.T, ws *labWorkspace, udp bool) *harness.Proc {
	t.Helper()
	args := []string{"port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", labForwardTCP, echoServer(t, ws.agentH))}
	if udp {
		args = append(args, "--udp", fmt.Sprintf("%d:%d", labForwardUDP, udpEchoServer(t, ws.agentH)))
	}
	pf := ws.User.Start("port-forward", args...)
	pf.WaitLine(pressCtrlC)
	return pf
}

// dialForward connects to the forwarded port in the client's namespace.
func dialForward(t *testing.T, ws *labWorkspace, network string, port int) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.StartTimeout)
	defer cancel()
	c, err := ws.client.DialContext(ctx, network, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	if err != nil {
		t.Fatalf("dial the forwarded port: %v", err)
	}
	return c
}

// forwardStream starts a port-forward and a stream through it.
func forwardStream(t *testing.T, ws *labWorkspace) *stream {
	t.Helper()
	startForward(t, ws, false)
	return startStream(t, dialForward(t, ws, "tcp4", labForwardTCP))
}

// pathMin is how many bytes a probe window must see on a path to count the
// stream as using it (the stream moves ~400 kB per window).
const pathMin = 100 << 10

// TestLabPathChanges holds one TCP session open through port-forward while
// the network under it changes: UDP is blocked on the client's router
// (relay), unblocked (direct again), and the server restarts. The session
// must never break.
func TestLabPathChanges(t *testing.T) {
	lab, serverH := newLab(t, false)
	srv := startLabServer(t, serverH, nil)
	agentH, clientH := lab.AddHost("agent", natlab.EasyNAT), lab.AddHost("client", natlab.EasyNAT)
	ws := startLabWorkspace(t, lab, srv, agentH, clientH)
	probe := newPathProbe(t, clientH, serverH.IP())

	s := forwardStream(t, ws)
	s.waitFlowing(t, 1<<20, flowTimeout, "a new session")
	took := probe.waitPath("direct", pathMin, directTimeout)
	t.Logf("FIGURE session direct %s after its first MB", took.Round(time.Millisecond))

	// UDP blocked: magicsock must notice that the direct path is dead and
	// fall back to the relay, under the same TCP connection; unblocked:
	// back to direct within a bounded time.
	udpBlockedAndBack(t, clientH, s, probe, "direct", directTimeout)

	// The server stops: the tunnel does not need it once up.
	srv.Stop()
	s.waitFlowing(t, 512<<10, flowTimeout, "while the server is down")
	// It starts again: the agent and the CLI coordinate through it again.
	restart := time.Now()
	srv.Restart()
	harness.WaitFor(t, harness.StatusTimeout, "the agent to coordinate again", func() bool {
		return strings.Contains(srv.Output(), "agent connected")
	})
	t.Logf("FIGURE server restarted: agent coordinating again %s after the restart began", time.Since(restart).Round(time.Millisecond))
	s.waitFlowing(t, 1<<20, flowTimeout, "after the server restarted")
	probe.waitPath("direct", pathMin, directTimeout)
	if got := ws.User.AgentStatus("dev"); got != "connected" {
		t.Errorf("agent status after the restart: %s", got)
	}
	if p := pings(t, ws.User, "-n", "3", "--interval", "100ms"); lastPath(p) == "timeout" {
		t.Errorf("a new tunnel after the restart: %+v", p)
	}

	// The session's relay came back with the server: it falls back again.
	if err := clientH.BlockUDP(true); err != nil {
		t.Fatal(err)
	}
	blocked := time.Now()
	stall := s.waitFlowing(t, 256<<10, flowTimeout, "after blocking UDP again")
	probe.waitPath("derp", pathMin, flowTimeout)
	t.Logf("FIGURE UDP blocked after the restart: data flowing again after %s, over DERP by %s", stall.Round(time.Millisecond), time.Since(blocked).Round(time.Millisecond))
	if err := s.err(); err != nil {
		t.Fatalf("the session broke: %v", err)
	}
}
