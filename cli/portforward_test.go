package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds each step of a test that waits on the network.
const testTimeout = 30 * time.Second

// testEnv is an Env with no environment and stdout and stderr to buffers.
func testEnv() (*Env, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}, &stdout, &stderr
}

// TestPortForwardLocalErrors: a local port that cannot be listened on ends
// the command with one line and exit status 1, before it needs a server;
// it used to panic closing the listener that was never opened.
func TestPortForwardLocalErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"tcp port in use", []string{"--tcp", busy.Addr().(*net.TCPAddr).AddrPort().String() + ":80"}, "the port is in use"},
		{"udp port in use", []string{"--udp", busyUDP.LocalAddr().(*net.UDPAddr).AddrPort().String() + ":53"}, "the port is in use"},
		{"second of two in use", []string{"--tcp", "0:22", "--tcp", busy.Addr().(*net.TCPAddr).AddrPort().String() + ":80"}, "the port is in use"},
		{"address not here", []string{"--tcp", "192.0.2.1:8080:80"}, "no such address"},
		{"bad mapping", []string{"--tcp", "8080:80:1:2"}, "brackets"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			env, stdout, stderr := testEnv()
			args := append([]string{"port-forward", "dev", "--config-dir", t.TempDir()}, tc.args...)
			code := Run(ctx, Root(env), env, args)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) || stdout.Len() > 0 {
				t.Errorf("exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and one line with %q", code, stdout, stderr, tc.want)
			}
		})
	}
}

// TestForwardTCPReports: a workspace port that closes the connection
// before answering (the agent does so when nothing listens there) is
// reported; one that answers, or closes after the request ended, is not.
func TestForwardTCPReports(t *testing.T) {
	tests := []struct {
		name    string
		serve   func(net.Conn) // the workspace's side
		client  func(net.Conn) // the local client's side
		dialErr error
		want    string // in the report; "" for none
	}{
		{"refused", func(c net.Conn) { c.Close() }, func(c net.Conn) { io.ReadAll(c) }, nil, "without answering"},
		{"refused after a request", func(c net.Conn) { c.Close() }, func(c net.Conn) { c.Write([]byte("GET /\n")); io.ReadAll(c) }, nil, "without answering"},
		{"answers", func(c net.Conn) { c.Write([]byte("hello")); c.Close() }, func(c net.Conn) { io.ReadAll(c) }, nil, ""},
		{"closes after the request ended", func(c net.Conn) { io.ReadAll(c); c.Close() },
			func(c net.Conn) { c.(*net.TCPConn).CloseWrite(); io.ReadAll(c) }, nil, ""},
		{"unreachable", nil, func(c net.Conn) { io.ReadAll(c) }, errors.New("agent gone"), "cannot reach the workspace: agent gone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			local, client := closedAtEnd(t)(tcpPair(t))
			var wg sync.WaitGroup
			dial := func(context.Context) (net.Conn, error) {
				if tc.dialErr != nil {
					return nil, tc.dialErr
				}
				ours, theirs := closedAtEnd(t)(tcpPair(t))
				wg.Add(1)
				go func() { defer wg.Done(); tc.serve(theirs) }()
				return ours, nil
			}
			wg.Add(1)
			go func() { defer wg.Done(); tc.client(client); client.Close() }()
			var reports []string
			forwardTCP(ctx, local, dial, func(err error) { reports = append(reports, err.Error()) })
			wg.Wait()
			got := strings.Join(reports, "; ")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("reported %q, want %q", got, tc.want)
			}
		})
	}
}

// closedAtEnd closes a pair of connections when the test ends.
func closedAtEnd(t *testing.T) func(a, b net.Conn) (net.Conn, net.Conn) {
	return func(a, b net.Conn) (net.Conn, net.Conn) {
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
}
