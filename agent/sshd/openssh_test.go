package sshd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/agent/sshd"
	"golang.org/x/crypto/ssh"
)

// openSSH runs the real OpenSSH tools against a server, the way users do:
// through a ProxyCommand, with the host key pinned in a known_hosts file.
type openSSH struct {
	t    *testing.T
	opts []string // -o options shared by ssh, scp and sftp
	env  []string
}

func newOpenSSH(t *testing.T, ts *testServer) *openSSH {
	t.Helper()
	for _, tool := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("OpenSSH client not installed (%s): apt-get install openssh-client", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	knownHosts := filepath.Join(dir, "known_hosts")
	line := "tether-test " + string(ssh.MarshalAuthorizedKey(ts.srv.PublicKey()))
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &openSSH{
		t: t,
		opts: []string{
			"-F", "/dev/null",
			"-o", "ProxyCommand=" + self,
			"-o", "UserKnownHostsFile=" + knownHosts,
			"-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes",
			"-o", "IdentityAgent=none",
			"-o", "LogLevel=ERROR",
		},
		env: append(os.Environ(), proxyEnv+"="+ts.addr),
	}
}

// command returns tool with the shared options, then args.
func (o *openSSH) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, tool, append(append([]string(nil), o.opts...), args...)...)
	cmd.Env = o.env
	cmd.WaitDelay = time.Second
	return cmd
}

func TestOpenSSHExec(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	o := newOpenSSH(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	tests := []struct {
		name     string
		flags    []string
		command  string
		stdin    string
		wantOut  string
		wantCode int
	}{
		{name: "echo", command: "echo hi", wantOut: "hi\n"},
		{name: "exit status", command: "exit 7", wantCode: 7},
		{name: "stdin", command: "tr a-z A-Z", stdin: "shout\n", wantOut: "SHOUT\n"},
		{name: "marker", command: "echo $TETHER", wantOut: "true\n"},
		{name: "forced tty", flags: []string{"-tt"}, command: "tty | cut -c1-9", wantOut: "/dev/pts/\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := o.command(ctx, "ssh", append(tt.flags, "tether-test", tt.command)...)
			cmd.Stdin = strings.NewReader(tt.stdin)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.wantOut || code != tt.wantCode {
				t.Errorf("ssh %q = %q, exit %d; want %q, exit %d (stderr %q)",
					tt.command, out, code, tt.wantOut, tt.wantCode, stderr.String())
			}
		})
	}
}

func TestOpenSSHCopy(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	o := newOpenSSH(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	data := make([]byte, 3<<20+17)
	rand.Read(data)
	want := sha256.Sum256(data)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, path string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != want {
			t.Fatalf("%s differs from what was sent", path)
		}
	}
	runTool := func(t *testing.T, cmd *exec.Cmd) {
		t.Helper()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}

	// The "remote" and local side share a disk here: paths tell them apart.
	tests := []struct {
		name  string
		flags []string
	}{
		{name: "scp over sftp"}, // OpenSSH 9's default
		{name: "legacy scp", flags: []string{"-O"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := filepath.Join(dir, fmt.Sprintf("up%d.bin", i))
			down := filepath.Join(dir, fmt.Sprintf("down%d.bin", i))
			runTool(t, o.command(ctx, "scp", append(tt.flags, src, "tether-test:"+up)...))
			check(t, up)
			runTool(t, o.command(ctx, "scp", append(tt.flags, "tether-test:"+up, down)...))
			check(t, down)
		})
	}

	t.Run("sftp", func(t *testing.T) {
		up := filepath.Join(dir, "sftp-up.bin")
		down := filepath.Join(dir, "sftp-down.bin")
		batch := filepath.Join(dir, "batch")
		script := fmt.Sprintf("put %s %s\nget %s %s\nls %s\n", src, up, up, down, up)
		if err := os.WriteFile(batch, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		runTool(t, o.command(ctx, "sftp", "-b", batch, "tether-test"))
		check(t, up)
		check(t, down)
	})
}

func TestOpenSSHLocalForward(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	o := newOpenSSH(t, ts)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	echo := echoServer(t)

	// A free port for ssh -L: there is a small race between closing it
	// and ssh binding it, which ExitOnForwardFailure turns into a clear
	// failure.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().String()
	l.Close()

	cmd := o.command(ctx, "ssh", "-N", "-o", "ExitOnForwardFailure=yes",
		"-L", local+":"+echo, "tether-test")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()

	deadline := time.Now().Add(testTimeout)
	for {
		c, err := net.DialTimeout("tcp", local, time.Second)
		if err == nil {
			defer c.Close()
			checkEcho(t, c)
			return
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("ssh -L never listened: %v (stderr %q)", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
