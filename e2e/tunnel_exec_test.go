package e2e

// `tether ssh WS [-- CMD]` over the exec protocol (package execproto, the
// agent's tether.AgentExecPort): bytes, exit statuses, signals, and who can
// reach the port.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/execproto"
	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/tunnel"
)

// TestSSHExecBytes: megabytes each way through `tether ssh`, stdout and
// stderr apart, exit statuses and signals as a shell reports them, and
// stdin's end reaching the program. The same over SSH
// (TETHER_SSH_PROTOCOL=ssh), which must agree.
func TestSSHExecBytes(t *testing.T) {
	env := startWorkspace(t)
	const lines = 1200000 // about 8.3 MB
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteByte('\n')
	}
	input := make([]byte, 4<<20+3)
	rand.Read(input)
	inputSum := sha256.Sum256(input)
	for _, proto := range []string{"exec", "ssh"} {
		t.Run(proto, func(t *testing.T) {
			u := *env.User
			u.Env = append(append([]string(nil), env.User.Env...), "TETHER_SSH_PROTOCOL="+proto)
			r := u.Run("ssh", "dev", "--", fmt.Sprintf("seq 1 %d; seq 1 3 >&2", lines))
			if r.Code != 0 || sha256.Sum256([]byte(r.Stdout)) != sha256.Sum256(want.Bytes()) || r.Stderr != "1\n2\n3\n" {
				t.Errorf("exit %d, stdout %d bytes (want %d, the same), stderr %q", r.Code, len(r.Stdout), want.Len(), r.Stderr)
			}
			r = u.RunInput(string(input), "ssh", "dev", "--", "sha256sum")
			if got := strings.Fields(r.Stdout); r.Code != 0 || len(got) == 0 || got[0] != hex.EncodeToString(inputSum[:]) {
				t.Errorf("stdin's checksum in the workspace: exit %d, %q; want %x", r.Code, r.Stdout, inputSum)
			}
			codes := []struct {
				command string
				code    int
			}{
				{"true", 0},
				{"exit 3", 3},
				{"kill -KILL $$", 128 + 9},
				{"kill -TERM $$", 128 + 15},
			}
			if proto == "exec" {
				// SSH names the signal only, and the CLI knows the
				// numbers of a few; the exec protocol brings the
				// workspace's number.
				codes = append(codes, struct {
					command string
					code    int
				}{"kill -USR1 $$", 128 + int(syscall.SIGUSR1)})
			}
			for _, c := range codes {
				if r := u.Run("ssh", "dev", "--", c.command); r.Code != c.code {
					t.Errorf("%q: exit %d, want %d (stderr %q)", c.command, r.Code, c.code, r.Stderr)
				}
			}
			// cat ends at stdin's end, and so does the session.
			if r := u.RunInput("no newline", "ssh", "dev", "--", "cat; echo; echo done"); r.Code != 0 || r.Stdout != "no newline\ndone\n" {
				t.Errorf("cat: exit %d, %q", r.Code, r.Stdout)
			}
		})
	}
}

// TestSSHExecInterrupt: Ctrl-C (SIGINT) to `tether ssh` reaches the remote
// program as SIGTERM, as over SSH, whose last output still arrives; the
// CLI exits 130.
func TestSSHExecInterrupt(t *testing.T) {
	env := startWorkspace(t)
	marker := filepath.Join(t.TempDir(), "marker")
	p := here.Start(t, "ssh", env.User.Env, "ssh", "dev", "--",
		fmt.Sprintf(`trap 'echo got TERM > %s; echo bye; exit 5' TERM; echo ready; while :; do sleep 0.05; done`, marker))
	p.WaitLine(regexp.MustCompile(`^ready$`))
	p.Cmd.Process.Signal(os.Interrupt)
	if code := waitExit(t, p, harness.CommandTimeout, "tether ssh after Ctrl-C"); code != 130 {
		t.Errorf("exit %d after Ctrl-C, want 130:\n%s", code, p.Output())
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "got TERM\n" {
		t.Errorf("the remote program did not get SIGTERM: %q, %v", b, err)
	}
	if !strings.Contains(p.Output(), "bye") {
		t.Errorf("the program's last output did not arrive:\n%s", p.Output())
	}
}

// TestSSHExecGarbage sends garbage to the agent's exec port through a port
// forward (which reaches the agent's own tunnel ports as any peer of its
// does): the agent answers with an error or closes, and goes on serving. A
// request written by hand works.
func TestSSHExecGarbage(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	local := freePort(t, "tcp")
	pf := u.Start("port-forward", "port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", local, tether.AgentExecPort))
	pf.WaitLine(regexp.MustCompile(`Press Ctrl\+C`))
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), harness.StartTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(harness.CommandTimeout))
		return c
	}
	random := make([]byte, 64<<10)
	rand.Read(random)
	for _, garbage := range [][]byte{
		random,
		[]byte("SSH-2.0-OpenSSH_9.6\r\n"),
		[]byte("R\x7f\xff\xff\xff"),
		execproto.AppendFrame(nil, execproto.FrameRequest, []byte(`{"version":1,"command":"echo a\u0000b"}`)),
		execproto.AppendFrame(nil, execproto.FrameStdin, []byte("input before any request")),
	} {
		c := dial()
		c.Write(garbage)
		c.(*net.TCPConn).CloseWrite() // no waiting for the rest of a frame
		b, _ := io.ReadAll(c)
		fr := execproto.NewReader(bytes.NewReader(b))
		if typ, p, err := fr.Next(); err == nil && typ != execproto.FrameError {
			t.Errorf("%.20q: the agent answered %q %q", garbage, typ, p)
		}
	}

	// A request by hand, with input at once.
	c := dial()
	var out []byte
	out = execproto.AppendFrame(out, execproto.FrameRequest, execproto.JSON(execproto.Request{Version: execproto.Version, Command: "tr a-z A-Z"}))
	out = execproto.AppendFrame(out, execproto.FrameStdin, []byte("by hand\n"))
	out = execproto.AppendFrame(out, execproto.FrameCloseIn, nil)
	c.Write(out)
	var stdout bytes.Buffer
	var exit *execproto.Exit
	fr := execproto.NewReader(c)
	for exit == nil {
		typ, p, err := fr.Next()
		if err != nil {
			t.Fatalf("the hand-made session: %v (stdout %q)", err, stdout.String())
		}
		switch typ {
		case execproto.FrameStdout:
			stdout.Write(p)
		case execproto.FrameExit:
			e, err := execproto.ParseExit(p)
			if err != nil {
				t.Fatal(err)
			}
			exit = &e
		}
	}
	if stdout.String() != "BY HAND\n" || exit.Status != 0 {
		t.Errorf("the hand-made session: %q, %+v", stdout.String(), exit)
	}
	if out := u.Must("ssh", "dev", "--", "echo", "alive"); out != "alive\n" {
		t.Errorf("after the garbage: %q", out)
	}
}

// TestSSHExecPortAuthorization is the attack on the exec port from a peer
// of the deployment: mallory, a member with a workspace of her own, joins
// the tunnel network as a peer of her workspace (a tunnel written by hand,
// not the CLI) and dials alice's agent's exec port at its tunnel address,
// which anyone can compute from the workspace's ID. The coordinator never
// introduces alice's agent to her, so nothing reaches it; her own agent's
// exec port, dialled the same way, answers.
func TestSSHExecPortAuthorization(t *testing.T) {
	env := startWorkspace(t)
	mallory := here.Member(t, env.Server.URL, env.User, "mallory")
	token, agentURL := mallory.CreateWorkspace("mine")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "mallory's agent connected", func() bool { return mallory.AgentStatus("mine") == "connected" })

	ctx, cancel := context.WithTimeout(t.Context(), harness.CommandTimeout)
	defer cancel()
	alice, err := client.New(env.Server.URL)
	if err != nil {
		t.Fatal(err)
	}
	alice.SessionToken = env.User.Token()
	dev, err := alice.Workspace(ctx, harness.AdminName, "dev")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Server.URL)
	if err != nil {
		t.Fatal(err)
	}
	c.SessionToken = mallory.Token()
	mine, err := c.Workspace(ctx, "mallory", "mine")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.ConnectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	conn, err := tunnel.New(ctx, tunnel.Options{
		Logger: slog.New(slog.DiscardHandler), ID: id, DERPMap: info.DERPMap,
		BlockEndpoints: info.DisableDirect, DERPPlainHTTP: true, DERPForceWebSockets: info.DERPForceWebSockets,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	coord := coordclient.New(coordclient.Options{
		Tunnel: conn,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			return c.DialWebSocket(ctx, client.CoordinatePath("mallory", "mine"), url.Values{
				"id": {id.String()}, "version": {tether.CoordinateProtocolVersion},
			})
		},
	})
	conn.SetNodeCallback(coord.SetNode)
	cctx, stop := context.WithCancel(context.Background())
	coordDone := make(chan struct{})
	go func() {
		defer close(coordDone)
		coord.Run(cctx)
	}()
	defer func() {
		stop()
		<-coordDone
	}()

	// Her own agent answers: the way in works.
	own, err := conn.DialContext(ctx, "tcp", netip.AddrPortFrom(tether.TunnelIP(mine.ID), tether.AgentExecPort))
	if err != nil {
		t.Fatalf("mallory's own agent: %v", err)
	}
	own.SetDeadline(time.Now().Add(harness.CommandTimeout))
	execproto.WriteFrame(own, execproto.FrameRequest, execproto.JSON(execproto.Request{Version: execproto.Version, Command: "true"}))
	fr := execproto.NewReader(own)
	for _, want := range []byte{execproto.FrameAccepted, execproto.FrameStarted} {
		if typ, _, err := fr.Next(); err != nil || typ != want {
			t.Fatalf("mallory's own agent answered %q, %v; want %q", typ, err, want)
		}
	}
	own.Close()

	// Alice's does not, on the exec port or any other.
	for _, port := range []uint16{tether.AgentExecPort, tether.AgentSSHPort, 22} {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := conn.DialContext(dctx, "tcp", netip.AddrPortFrom(tether.TunnelIP(dev.ID), port))
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("mallory reached port %d of alice's agent", port)
		}
	}
}
