package sshd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/tetherdev/tether/agent/sshd"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// testTimeout bounds every test; nothing here should take more than a few
// seconds on a slow machine.
const testTimeout = 30 * time.Second

// testServer is a running server and a way to stop it.
type testServer struct {
	srv    *sshd.Server
	addr   string
	served chan error
}

func startServer(t *testing.T, opts sshd.Options) *testServer {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith starts a server after setup, if any, has changed it.
func startServerWith(t *testing.T, opts sshd.Options, setup func(*sshd.Server)) *testServer {
	t.Helper()
	srv, err := sshd.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, addr: l.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(l) }()
	t.Cleanup(func() { ts.close(t) })
	return ts
}

// close stops the server and checks that Serve returned as documented.
// It may run twice.
func (ts *testServer) close(t *testing.T) {
	t.Helper()
	ts.srv.Close()
	select {
	case err, ok := <-ts.served:
		if ok && !errors.Is(err, sshd.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if ok {
			close(ts.served)
		}
	case <-time.After(testTimeout):
		t.Error("Serve did not return after Close")
	}
}

func dial(t *testing.T, ts *testServer) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", ts.addr, &ssh.ClientConfig{
		User:            "anyone",
		HostKeyCallback: ssh.FixedHostKey(ts.srv.PublicKey()),
		Timeout:         testTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run execs command in a new session and returns stdout, stderr and the
// error of Wait (an *ssh.ExitError for a non-zero status or a signal).
func run(t *testing.T, c *ssh.Client, command, stdin string, env map[string]string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for k, v := range env {
		if err := s.Setenv(k, v); err != nil {
			t.Fatalf("setenv %s: %v", k, err)
		}
	}
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	s.Stdin = strings.NewReader(stdin)
	done := make(chan error, 1)
	go func() { done <- s.Run(command) }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), err
	case <-time.After(testTimeout):
		s.Close()
		<-done
		t.Fatalf("%q did not finish", command)
		return "", "", nil
	}
}

func TestExec(t *testing.T) {
	ts := startServer(t, sshd.Options{Env: []string{"TETHER_WORKSPACE=dev"}})
	c := dial(t, ts)
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		command    string
		stdin      string
		env        map[string]string
		wantOut    string
		wantErr    string
		wantStatus int
		wantSignal string
	}{
		{name: "echo", command: "echo hi", wantOut: "hi\n"},
		{name: "exit status", command: "exit 7", wantStatus: 7},
		{name: "stderr", command: "echo oops >&2; exit 1", wantErr: "oops\n", wantStatus: 1},
		{name: "stdin to EOF", command: "cat; echo done", stdin: "abc\n", wantOut: "abc\ndone\n"},
		{name: "killed by signal", command: "kill -TERM $$", wantSignal: "TERM"},
		{name: "shell syntax", command: `for i in 1 2; do printf "%s," "$i"; done`, wantOut: "1,2,"},
		{name: "no tty", command: "tty", wantOut: "not a tty\n", wantStatus: 1},
		{name: "working dir is home", command: "pwd", wantOut: home + "\n"},
		{name: "tether marker and extra env", command: `echo "$TETHER $TETHER_WORKSPACE"`, wantOut: "true dev\n"},
		{name: "env request", command: `echo "$FOO"`, env: map[string]string{"FOO": "bar baz"}, wantOut: "bar baz\n"},
		{name: "client cannot override marker", command: `echo "$TETHER"`, env: map[string]string{"TETHER": "false"}, wantOut: "true\n"},
		{name: "ssh connection", command: `set -- $SSH_CONNECTION; echo "$1 $3 $4"`, wantOut: "127.0.0.1 127.0.0.1 " + port(ts.addr) + "\n"},
		{name: "ssh client", command: `set -- $SSH_CLIENT; echo "$1 $3"`, wantOut: "127.0.0.1 " + port(ts.addr) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, c, tt.command, tt.stdin, tt.env)
			if out != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if errOut != tt.wantErr {
				t.Errorf("stderr = %q, want %q", errOut, tt.wantErr)
			}
			var ee *ssh.ExitError
			switch {
			case tt.wantStatus == 0 && tt.wantSignal == "":
				if err != nil {
					t.Errorf("err = %v, want success", err)
				}
			case !errors.As(err, &ee):
				t.Errorf("err = %v, want an exit error", err)
			case ee.ExitStatus() != tt.wantStatus && tt.wantSignal == "":
				t.Errorf("exit status = %d, want %d", ee.ExitStatus(), tt.wantStatus)
			case ee.Signal() != tt.wantSignal:
				t.Errorf("exit signal = %q, want %q", ee.Signal(), tt.wantSignal)
			}
		})
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// syncBuffer collects a session's output for polling.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the output contains want.
func waitFor(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q; got:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPTY(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 40, 100, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	s.Stdout = &out
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}

	// Markers are built by the shell so that the terminal's echo of the
	// command line never matches them.
	fmt.Fprintf(in, "echo \"TTY=[$(tty)] TERM=[$TERM] TTYENV=[$SSH_TTY] SIZE=[$(stty size)]\"\n")
	waitFor(t, &out, "TERM=[xterm]")
	waitFor(t, &out, "SIZE=[40 100]")
	if !strings.Contains(out.String(), "TTY=[/dev/pts/") {
		t.Errorf("no tty in session: %q", out.String())
	}
	if !strings.Contains(out.String(), "TTYENV=[/dev/pts/") {
		t.Errorf("no SSH_TTY in session: %q", out.String())
	}

	if err := s.WindowChange(50, 132); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(in, "echo \"NEW=[$(stty size)]\"\n")
	waitFor(t, &out, "NEW=[50 132]")

	fmt.Fprintf(in, "exit 3\n")
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("shell did not exit")
	}
}

// TestBackgroundHolder checks that a background process that keeps the
// output open does not keep the session open after its program exits.
func TestBackgroundHolder(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	// The holder sleeps much longer than the session may take to end.
	// setsid keeps it from the hang-up a PTY's session leader sends to its
	// group on exit.
	const command = "setsid sleep 20 & echo started $!"
	for _, withPTY := range []bool{false, true} {
		t.Run(fmt.Sprintf("pty=%v", withPTY), func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if withPTY {
				if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
					t.Fatal(err)
				}
			}
			var out syncBuffer
			s.Stdout = &out
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- s.Run(command) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("session stayed open while a background process held its output")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("session took %v to end; it waited for the background process", d)
			}
			var pid int
			if _, err := fmt.Sscanf(strings.TrimSpace(out.String()), "started %d", &pid); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		})
	}
}

// gate is a writer that blocks until it is opened, like a client that
// stopped reading, and counts what it lets through.
type gate struct {
	open chan struct{}
	n    int
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	g.n += len(p)
	return len(p), nil
}

// TestStalledClientGetsAllOutput checks that output still queued in the
// server when the program exits reaches a client that had stopped reading
// (`ssh ws cat big | less`), and is not cut when the grace period for
// background processes holding the output runs out.
func TestStalledClientGetsAllOutput(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, withPTY := range []bool{false, true} {
		t.Run(fmt.Sprintf("pty=%v", withPTY), func(t *testing.T) {
			countFile := filepath.Join(t.TempDir(), "count")
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if withPTY {
				if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Setenv(fillEnv, countFile); err != nil {
				t.Fatal(err)
			}
			g := &gate{open: make(chan struct{})}
			s.Stdout = g
			// The program fills everything up to the client, and exits.
			if err := s.Start(self); err != nil {
				t.Fatal(err)
			}
			var count []byte
			deadline := time.Now().Add(testTimeout)
			for count == nil {
				count, _ = os.ReadFile(countFile)
				if time.Now().After(deadline) {
					t.Fatal("the program never filled its output")
				}
				time.Sleep(10 * time.Millisecond)
			}
			want, _ := strconv.Atoi(string(count))
			// Deliberately stay stalled longer than the server's grace for
			// background processes (1s).
			time.Sleep(1500 * time.Millisecond)
			close(g.open)
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			if g.n != want {
				t.Errorf("client got %d bytes, want %d", g.n, want)
			}
		})
	}
}

func TestSFTP(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	data := make([]byte, 5<<20+123)
	rand.Read(data)
	want := sha256.Sum256(data)
	path := filepath.Join(t.TempDir(), "upload.bin")

	f, err := sc.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(onDisk) != want {
		t.Fatal("uploaded file differs")
	}

	g, err := sc.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := sha256.New()
	if _, err := g.WriteTo(h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("downloaded file differs")
	}

	// Relative paths start at the user's home, as with OpenSSH.
	wd, err := sc.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if home, _ := os.UserHomeDir(); wd != home {
		t.Errorf("sftp working dir = %q, want %q", wd, home)
	}
}

// echoServer accepts connections on 127.0.0.1 and echoes them.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// checkEcho sends a message through c, half-closes, and expects it back
// followed by EOF: both directions and the half-close must pass.
func checkEcho(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testTimeout))
	msg := bytes.Repeat([]byte("tether "), 50000)
	go func() {
		c.Write(msg)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echoed %d bytes, want %d", len(got), len(msg))
	}
}

func TestLocalForward(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	echo := echoServer(t)

	fc, err := c.Dial("tcp", echo)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	checkEcho(t, fc)

	// A port with nothing behind it is refused, not hung.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	if _, err := c.Dial("tcp", dead); err == nil {
		t.Error("dial to a closed port succeeded")
	}
}

func TestReverseForward(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)

	l, err := c.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		fc, err := l.Accept()
		if err != nil {
			return
		}
		defer fc.Close()
		io.Copy(fc, fc)
	}()

	nc, err := net.DialTimeout("tcp", l.Addr().String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	checkEcho(t, nc)
}

func TestAgentForwarding(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "tether-test-key"}); err != nil {
		t.Fatal(err)
	}
	if err := agent.ForwardToAgent(c, keyring); err != nil {
		t.Fatal(err)
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := agent.RequestAgentForwarding(s); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(`echo "$SSH_AUTH_SOCK"`)
	if err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimSpace(string(out))
	if sock == "" {
		t.Fatal("SSH_AUTH_SOCK is not set")
	}

	// The test runs on the workspace's machine, so it can be the program
	// in the workspace that asks the agent.
	uc, err := net.DialTimeout("unix", sock, testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(testTimeout))
	keys, err := agent.NewClient(uc).List()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Comment != "tether-test-key" {
		t.Fatalf("agent keys = %v, want the test key", keys)
	}
}

func TestSignal(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out syncBuffer
	s.Stdout = &out
	if err := s.Start("echo ready; exec sleep 600"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "ready")
	if err := s.Signal(ssh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "USR1" {
			t.Errorf("Wait = %v, want exit signal USR1", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("signal did not end the command")
	}
}

// TestClose checks that Close ends a running session and its process.
func TestClose(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out syncBuffer
	s.Stdout = &out
	done := make(chan error, 1)
	go func() { done <- s.Run("echo pid=$$; exec sleep 600") }()
	waitFor(t, &out, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(out.String(), "pid=")))
	if err != nil {
		t.Fatalf("no pid in %q", out.String())
	}

	ts.close(t)
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("session still open after Close")
	}
	// Close waits for the process to be reaped, so it is gone already.
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after Close (kill: %v)", pid, err)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, testTimeout); err == nil {
		t.Error("listener still accepts after Close")
	}
}

// TestShutdown checks that Shutdown waits for a session to finish by
// itself, and cuts it when its context ends.
func TestShutdown(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out syncBuffer
	s.Stdout = &out
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("read line; echo got $line"); err != nil {
		t.Fatal(err)
	}

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		shut <- ts.srv.Shutdown(ctx)
	}()
	// The session still works while the server shuts down.
	fmt.Fprintln(in, "bye")
	waitFor(t, &out, "got bye")
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Shutdown did not return after the last connection closed")
	}

	// A connection that does not end is cut when ctx ends.
	ts2 := startServer(t, sshd.Options{})
	c2 := dial(t, ts2)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts2.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	if _, _, err := c2.SendRequest("ping@tether", true, nil); err == nil {
		t.Error("connection still open after Shutdown's deadline")
	}
}

func TestHostKey(t *testing.T) {
	key, err := sshd.GenerateHostKey()
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, sshd.Options{HostKey: key})
	want, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ts.srv.PublicKey().Marshal(), want.Marshal()) {
		t.Fatal("server does not use the given host key")
	}
	if got := want.Type(); got != ssh.KeyAlgoED25519 {
		t.Errorf("host key type = %s, want ed25519", got)
	}
	// dial pins the key: the handshake proves the server holds it.
	c := dial(t, ts)
	if out, _, err := run(t, c, "echo ok", "", nil); err != nil || out != "ok\n" {
		t.Errorf("exec over pinned host key = %q, %v", out, err)
	}
}
