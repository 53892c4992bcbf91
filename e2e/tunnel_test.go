package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/tetherdev/tether/internal/harness"
)

// startWorkspace starts a server with serverArgs, its admin alice signed
// in with the CLI, and her workspace "dev" whose agent is connected.
func startWorkspace(t *testing.T, serverArgs ...string) *harness.Deployment {
	t.Helper()
	return harness.StartDeployment(t, here.StartServer(t, serverArgs...), harness.DeploymentOptions{})
}

func TestSSHCommand(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	if out := u.Must("ssh", "dev", "--", "echo", "hi"); out != "hi\n" {
		t.Errorf("ssh dev -- echo hi printed %q", out)
	}
	r := u.Run("ssh", "dev", "--", "echo oops >&2; exit 7")
	if r.Code != 7 || r.Stderr != "oops\n" {
		t.Errorf("exit code %d, stderr %q; want 7 and the remote stderr", r.Code, r.Stderr)
	}
	if out := u.RunInput("piped input\n", "ssh", "dev", "--", "cat"); out.Stdout != "piped input\n" {
		t.Errorf("stdin to a remote cat came back as %q", out.Stdout)
	}
	if out := u.Must("ssh", "dev", "--", "echo $TETHER_WORKSPACE"); out != "dev\n" {
		t.Errorf("TETHER_WORKSPACE in the session = %q", out)
	}
	// The agent's token never reaches sessions.
	if out := u.Must("ssh", "dev", "--", "env"); strings.Contains(out, "TETHER_AGENT_TOKEN") {
		t.Error("the agent token leaked into the session environment")
	}
}

func TestSSHInteractivePTY(t *testing.T) {
	env := startWorkspace(t)
	cmd := exec.Command(here.Bin, "ssh", "dev")
	cmd.Env = append(append(harness.CleanEnv(), env.User.Env...), "TERM=xterm-256color")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	out := &lockedBuffer{}
	go io.Copy(out, ptmx)
	fmt.Fprintf(ptmx, "echo TERM=$TERM; stty size; tty\n")
	harness.WaitFor(t, harness.CommandTimeout, "the shell to answer", func() bool {
		s := out.String()
		return strings.Contains(s, "TERM=xterm-256color") && strings.Contains(s, "30 100") && strings.Contains(s, "/dev/pts/")
	})
	pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120})
	// The resize reaches the remote terminal (SIGWINCH → window-change).
	harness.WaitFor(t, harness.CommandTimeout, "the window size to change", func() bool {
		fmt.Fprintf(ptmx, "stty size\n")
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(out.String(), "40 120")
	})
	fmt.Fprintf(ptmx, "exit 3\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("interactive session ended with %v, want exit status 3\n%s", err, out.String())
		}
	case <-time.After(harness.CommandTimeout):
		cmd.Process.Kill()
		t.Fatalf("interactive session did not end:\n%s", out.String())
	}
}

type lockedBuffer struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func (b *lockedBuffer) lock() {
	if b.mu == nil {
		b.mu = make(chan struct{}, 1)
	}
	b.mu <- struct{}{}
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.lock()
	defer func() { <-b.mu }()
	return b.buf.String()
}

// requireOpenSSH skips when the OpenSSH client is missing, except in CI,
// whose script installs it.
func requireOpenSSH(t *testing.T) {
	for _, bin := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; .ci/run should have installed openssh-client", bin)
			}
			t.Skipf("%s is not installed (apt-get install openssh-client)", bin)
		}
	}
}

// sshArgs are OpenSSH options that reach the workspace through tether.
func sshArgs(u *harness.User) []string {
	proxy := fmt.Sprintf("%s --config-dir %s ssh --stdio %%h", here.Bin, u.ConfigDir)
	return []string{"-o", "ProxyCommand=" + proxy, "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes"}
}

func runOpenSSH(t *testing.T, u *harness.User, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(harness.CleanEnv(), u.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
	case <-time.After(harness.CommandTimeout):
		cmd.Process.Kill()
		t.Fatalf("%s did not finish", name)
	}
	return stdout.String()
}

func TestOpenSSH(t *testing.T) {
	requireOpenSSH(t)
	env := startWorkspace(t)
	u := env.User
	if out := runOpenSSH(t, u, "ssh", append(sshArgs(u), "dev", "echo", "hello from openssh")...); out != "hello from openssh\n" {
		t.Errorf("ssh printed %q", out)
	}

	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	data := make([]byte, 10<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	check := func(path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(b) != want {
			t.Errorf("%s: checksum differs after the copy (%d bytes)", path, len(b))
		}
	}
	// The agent runs on this machine, so "remote" paths are local ones.
	viaSCP := filepath.Join(dir, "via-scp.bin")
	runOpenSSH(t, u, "scp", append(sshArgs(u), src, "dev:"+viaSCP)...)
	check(viaSCP)
	back := filepath.Join(dir, "back.bin")
	runOpenSSH(t, u, "scp", append(sshArgs(u), "dev:"+viaSCP, back)...)
	check(back)

	batch := filepath.Join(dir, "batch")
	viaSFTP := filepath.Join(dir, "via-sftp.bin")
	os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s\nget %s %s\n", src, viaSFTP, viaSFTP, viaSFTP+".back")), 0o600)
	runOpenSSH(t, u, "sftp", append(append(sshArgs(u), "-b", batch), "dev")...)
	check(viaSFTP)
	check(viaSFTP + ".back")
}

func TestConfigSSH(t *testing.T) {
	requireOpenSSH(t)
	env := startWorkspace(t)
	u := env.User
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	mine := "Host myserver\n  HostName 127.0.0.1\n"
	os.WriteFile(cfg, []byte(mine), 0o600)

	if out := u.Must("config-ssh", "--ssh-config-file", cfg, "--dry-run"); !strings.Contains(out, "Host tether.*") {
		t.Errorf("dry run printed %q", out)
	}
	if b, _ := os.ReadFile(cfg); string(b) != mine {
		t.Fatal("--dry-run changed the file")
	}
	u.Must("config-ssh", "--ssh-config-file", cfg)
	first, _ := os.ReadFile(cfg)
	if !strings.Contains(string(first), mine) || strings.Count(string(first), "Host tether.*") != 1 {
		t.Fatalf("config after config-ssh:\n%s", first)
	}
	if out := u.Must("config-ssh", "--ssh-config-file", cfg); !strings.Contains(out, "up to date") {
		t.Errorf("second run: %q", out)
	}
	if again, _ := os.ReadFile(cfg); !bytes.Equal(again, first) {
		t.Errorf("second run changed the file:\n%s", again)
	}
	cmd := exec.Command("ssh", "-F", cfg, "-o", "BatchMode=yes", "tether.dev", "echo", "via config")
	cmd.Env = append(harness.CleanEnv(), u.Env...)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "via config\n" {
		t.Errorf("ssh tether.dev: %v\n%s", err, out)
	}
}

// freePort returns a loopback port that is free now.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestPortForward(t *testing.T) {
	env := startWorkspace(t)

	// "Workspace" services: a TCP server that answers each line with its
	// upper case, and a UDP one that does the same per datagram.
	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					fmt.Fprintln(c, strings.ToUpper(sc.Text()))
				}
			}()
		}
	}()
	udpConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpConn.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := udpConn.ReadFrom(buf)
			if err != nil {
				return
			}
			udpConn.WriteTo(bytes.ToUpper(buf[:n]), addr)
		}
	}()

	tcpRemote := tcpLn.Addr().(*net.TCPAddr).Port
	udpRemote := udpConn.LocalAddr().(*net.UDPAddr).Port
	tcpLocal, udpLocal := freePort(t, "tcp"), freePort(t, "udp")
	pf := here.Start(t, "port-forward", env.User.Env, "port-forward", "dev",
		"--tcp", fmt.Sprintf("%d:%d", tcpLocal, tcpRemote), "--udp", fmt.Sprintf("%d:%d", udpLocal, udpRemote))
	pf.WaitLine(regexp.MustCompile(`Press Ctrl\+C`))

	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpLocal), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(harness.CommandTimeout))
	rd := bufio.NewReader(c)
	for _, msg := range []string{"hello", strings.Repeat("x", 100000)} {
		fmt.Fprintln(c, msg)
		line, err := rd.ReadString('\n')
		if err != nil || line != strings.ToUpper(msg)+"\n" {
			t.Fatalf("TCP forward answered %.40q, %v", line, err)
		}
	}

	u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpLocal))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	buf := make([]byte, 2048)
	got := ""
	harness.WaitFor(t, harness.StatusTimeout, "a UDP reply through the forward", func() bool {
		u.Write([]byte("ping"))
		u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := u.Read(buf)
		if err == nil {
			got = string(buf[:n])
		}
		return got == "PING"
	})
	big := bytes.Repeat([]byte("u"), 1200)
	u.Write(big)
	u.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := u.Read(buf); err != nil || !bytes.Equal(buf[:n], bytes.ToUpper(big)) {
		t.Errorf("1200-byte datagram: %d bytes back, %v", n, err)
	}
}

type pingLine struct {
	Path       string  `json:"path"`
	Endpoint   string  `json:"endpoint"`
	DERPRegion string  `json:"derp_region"`
	LatencyMS  float64 `json:"latency_ms"`
}

// pings runs `tether ping dev --output json` and parses its lines.
func pings(t testing.TB, u *harness.User, args ...string) []pingLine {
	t.Helper()
	out := u.Must(append([]string{"ping", "dev", "--output", "json"}, args...)...)
	return parsePings(t, out)
}

func parsePings(t testing.TB, out string) []pingLine {
	t.Helper()
	var lines []pingLine
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var p pingLine
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("ping line %q: %v", l, err)
		}
		lines = append(lines, p)
	}
	if len(lines) == 0 {
		t.Fatal("ping printed nothing")
	}
	return lines
}

func TestPingPaths(t *testing.T) {
	env := startWorkspace(t)
	u := env.User

	// On loopback the path goes direct within a few pings.
	lines := pings(t, u, "-n", "15", "--interval", "200ms")
	last := lines[len(lines)-1]
	if last.Path != "direct" || !strings.HasPrefix(last.Endpoint, "127.0.0.1:") && !strings.Contains(last.Endpoint, ":") {
		t.Errorf("last ping on loopback: %+v; all: %+v", last, lines)
	}
	out := u.Must("ping", "dev", "-n", "15", "--interval", "200ms")
	if !strings.Contains(out, "p2p connection established") {
		t.Errorf("text ping did not announce the direct path:\n%s", out)
	}

	for _, l := range pings(t, u, "-n", "3", "--interval", "100ms", "--disable-direct") {
		if l.Path != "derp" || l.DERPRegion != "tether" {
			t.Errorf("--disable-direct: %+v", l)
		}
	}
	out = u.Must("ping", "dev", "-n", "2", "--interval", "100ms", "--disable-direct")
	if !strings.Contains(out, "--disable-direct") {
		t.Errorf("relayed ping does not explain why:\n%s", out)
	}
}

func TestBlockDirectConnections(t *testing.T) {
	env := startWorkspace(t, "--block-direct-connections")
	u := env.User
	for _, l := range pings(t, u, "-n", "4", "--interval", "200ms") {
		if l.Path != "derp" {
			t.Errorf("with --block-direct-connections: %+v", l)
		}
	}
	if out := u.Must("ping", "dev", "-n", "2", "--interval", "100ms"); !strings.Contains(out, "server blocks direct connections") {
		t.Errorf("relayed ping does not explain why:\n%s", out)
	}
	// Data flows over the relay.
	if out := u.Must("ssh", "dev", "--", "head -c 3000000 /dev/zero | wc -c"); strings.TrimSpace(out) != "3000000" {
		t.Errorf("relayed ssh printed %q", out)
	}
}

func TestTunnelAuthorization(t *testing.T) {
	env := startWorkspace(t)
	other := here.Member(t, env.Server.URL, env.User, "mallory")
	stderr := other.Fails("ssh", "alice/dev", "--", "true")
	if !strings.Contains(stderr, "not found") {
		t.Errorf("another user's ssh: %q", stderr)
	}
	// A WebSocket handshake, as the CLI sends: a plain GET is refused as
	// not a WebSocket before anything is looked up.
	code, _ := api(t, "GET", env.Server.URL+"/api/v2/workspaces/alice/dev/coordinate?version=1.0&id=5a3ae5b6-0b6b-4f43-9b7f-0f2c3b0a1d2e", other.Token(), nil,
		"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if code != 404 {
		t.Errorf("another user's coordinate request: %d, want 404", code)
	}
}

func TestBrowserOnlyRefusesCLITunnels(t *testing.T) {
	env := startWorkspace(t, "--browser-only")
	for _, args := range [][]string{{"ssh", "dev", "--", "true"}, {"ping", "dev", "-n", "1"}} {
		stderr := env.User.Fails(args...)
		if !strings.Contains(stderr, "browser-only") {
			t.Errorf("tether %s: %q", strings.Join(args, " "), stderr)
		}
	}
}

func TestSpeedtest(t *testing.T) {
	env := startWorkspace(t)
	for _, dir := range []string{"down", "up"} {
		out := env.User.Must("speedtest", "dev", "-t", "1s", "--direction", dir, "--output", "json")
		var res struct {
			Direction  string  `json:"direction"`
			Path       string  `json:"path"`
			Bytes      int64   `json:"bytes"`
			Throughput float64 `json:"throughput_bytes_per_s"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("speedtest json: %v\n%s", err, out)
		}
		if res.Direction != dir || res.Bytes < 1<<20 || res.Throughput <= 0 || (res.Path != "direct" && res.Path != "derp") {
			t.Errorf("speedtest %s: %+v", dir, res)
		}
	}
	if out := env.User.Must("speedtest", "dev", "-t", "500ms"); !strings.Contains(out, "total") || !strings.Contains(out, "MB/s") {
		t.Errorf("text speedtest:\n%s", out)
	}
}

func TestListShowsConnectionPath(t *testing.T) {
	env := startWorkspace(t)
	u := env.User
	if out := u.Must("list"); !strings.Contains(out, "PATH") {
		t.Fatalf("list has no PATH column:\n%s", out)
	}
	session := here.Start(t, "ssh session", u.Env, "ssh", "dev", "--", "sleep 60")
	defer session.Kill()
	var got string
	harness.WaitFor(t, harness.StatusTimeout, "list to show the session's direct path", func() bool {
		var ws []struct {
			Connection *struct {
				Path  string `json:"path"`
				Peers int    `json:"peers"`
			} `json:"connection"`
		}
		json.Unmarshal([]byte(u.Must("list", "--output", "json")), &ws)
		if len(ws) == 1 && ws[0].Connection != nil {
			got = ws[0].Connection.Path
		}
		return got == "direct"
	})
	if out := u.Must("list"); !strings.Contains(out, "direct (1 active)") {
		t.Errorf("list:\n%s", out)
	}
}
