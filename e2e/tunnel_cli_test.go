package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// TestPingSummaryAndExit: ping ends with a summary, stops at the first
// direct pong with --until-direct, and exits 1 when the pongs it needs
// never came.
func TestPingSummaryAndExit(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	out := u.Must("ping", "dev", "-n", "3", "--interval", "100ms")
	if !regexp.MustCompile(`--- dev ping statistics ---\n3 pings sent, 3 pongs received, 0% loss, min/avg/max \S+/\S+/\S+\n$`).MatchString(out) {
		t.Errorf("no summary at the end:\n%s", out)
	}
	// On loopback the path goes direct within a few pings.
	out = u.Must("ping", "dev", "--until-direct", "-n", "50", "--interval", "200ms")
	if !strings.Contains(out, "p2p connection established\n--- dev ping statistics ---") || strings.Contains(out, "50 pings sent") {
		t.Errorf("--until-direct did not stop at the direct pong:\n%s", out)
	}
	stderr := u.Fails("ping", "dev", "--until-direct", "--disable-direct", "-n", "2", "--interval", "100ms")
	if !strings.Contains(stderr, "no direct path to alice/dev within 2 pings") {
		t.Errorf("--until-direct without a direct path: %q", stderr)
	}
}

// TestPortForwardEdges: ranges and IPv6 binds forward; a port where
// nothing listens in the workspace is reported; a local port in use ends
// the command with one line (it used to panic).
func TestPortForwardEdges(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	// Two workspace services on consecutive ports, each naming itself.
	first := freeRange(t)
	remote := []int{first, first + 1}
	for _, port := range remote {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "port %d\n", port)
				c.Close()
			}
		}()
	}
	nothing := freePort(t, "tcp") // nothing listens there in the workspace
	local := freePort(t, "tcp")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	stderr := u.Fails("port-forward", "dev", "--tcp", fmt.Sprintf("%s:%d", busy.Addr(), remote[0]))
	if !strings.Contains(stderr, "the port is in use") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
		t.Errorf("local port in use: %q", stderr)
	}

	args := []string{"port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", local, nothing)}
	ranged := freeRange(t)
	args = append(args, "--tcp", fmt.Sprintf("%d-%d:%d-%d", ranged, ranged+1, remote[0], remote[1]))
	v6 := ipv6Loopback()
	if v6 {
		args = append(args, "--tcp", fmt.Sprintf("[::1]:%d:%d", ranged, remote[0]))
	}
	pf := u.Start("port-forward", args...)
	pf.WaitLine(regexp.MustCompile(`Press Ctrl\+C`))
	read := func(addr string) string {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(harness.CommandTimeout))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for i, port := range []int{ranged, ranged + 1} {
		if got, want := read(fmt.Sprintf("127.0.0.1:%d", port)), fmt.Sprintf("port %d\n", remote[i]); got != want {
			t.Errorf("range: local %d answered %q, want %q", port, got, want)
		}
	}
	if v6 {
		if got, want := read(fmt.Sprintf("[::1]:%d", ranged)), fmt.Sprintf("port %d\n", remote[0]); got != want {
			t.Errorf("[::1]:%d answered %q, want %q", ranged, got, want)
		}
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(harness.CommandTimeout))
	io.ReadAll(c)
	c.Close()
	harness.WaitFor(t, harness.StatusTimeout, "the refused port to be reported", func() bool {
		return strings.Contains(pf.Output(), fmt.Sprintf("forward to dev port %d: the workspace closed the connection without answering", nothing))
	})
}

// freeRange returns the first of two consecutive free TCP ports.
func freeRange(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := freePort(t, "tcp")
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no two consecutive free ports")
	return 0
}

func ipv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
