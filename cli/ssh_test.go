package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"golang.org/x/crypto/ssh"
)

// sshTestTimeout bounds each case.
const sshTestTimeout = 20 * time.Second

// fakeSSHServer serves one SSH connection on conn: for the first exec
// request it calls behave with the session's channel, then closes the
// channel. Global requests are answered unless silent.
func fakeSSHServer(t *testing.T, conn net.Conn, silent bool, behave func(ch ssh.Channel)) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
		if err != nil {
			return
		}
		defer sc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for req := range reqs {
				if !silent && req.WantReply {
					req.Reply(false, nil)
				}
			}
		}()
		for nc := range chans {
			ch, creqs, err := nc.Accept()
			if err != nil {
				return
			}
			for req := range creqs {
				if req.Type != "exec" {
					req.Reply(true, nil)
					continue
				}
				req.Reply(true, nil)
				behave(ch)
				ch.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					ssh.DiscardRequests(creqs)
				}()
				break
			}
		}
	}()
}

// tcpPair returns the two ends of a loopback TCP connection (net.Pipe does
// not buffer, and both SSH ends write their version first).
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

func exitStatus(code uint32) []byte {
	return ssh.Marshal(struct{ Status uint32 }{code})
}

// TestRunSSHExit checks how the end of a remote command becomes the CLI's
// exit: its status passes through, its output is all written first, and a
// session that ends without a status is never a success.
func TestRunSSHExit(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	goneErr := errors.New("the agent of me/dev restarted; the connection to the old one is gone")
	tests := []struct {
		name       string
		behave     func(ch ssh.Channel, conn net.Conn)
		gone       error
		wantCode   int // -1: success
		wantOut    []byte
		wantStderr string
	}{
		{
			name: "output then success",
			behave: func(ch ssh.Channel, _ net.Conn) {
				ch.Write(big)
				ch.CloseWrite()
				ch.SendRequest("exit-status", false, exitStatus(0))
			},
			wantCode: -1,
			wantOut:  big,
		},
		{
			name: "exit status passes through",
			behave: func(ch ssh.Channel, _ net.Conn) {
				ch.Write([]byte("partial\n"))
				ch.CloseWrite()
				ch.SendRequest("exit-status", false, exitStatus(3))
			},
			wantCode: 3,
			wantOut:  []byte("partial\n"),
		},
		{
			name: "closed without an exit status",
			behave: func(ch ssh.Channel, _ net.Conn) {
				ch.Write([]byte("half"))
			},
			wantCode:   exitConnectionLost,
			wantOut:    []byte("half"),
			wantStderr: "without an exit status",
		},
		{
			name: "agent gone",
			behave: func(ch ssh.Channel, conn net.Conn) {
				ch.Write([]byte("half"))
				conn.Close() // what the tunnel does when the agent is gone
			},
			gone:       goneErr,
			wantCode:   exitConnectionLost,
			wantOut:    []byte("half"),
			wantStderr: goneErr.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), sshTestTimeout)
			defer cancel()
			client, server := tcpPair(t)
			defer client.Close()
			fakeSSHServer(t, server, false, func(ch ssh.Channel) { tt.behave(ch, server) })
			var stdout, stderr bytes.Buffer
			r := &root{env: &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}}
			gone := func() error { return tt.gone }
			ws := tether.Workspace{ID: uuid.New(), Name: "dev", Owner: "me"}
			err := r.runSSH(ctx, client, ws, newTimeline(slog.New(slog.DiscardHandler), time.Now()), gone, "cmd", false, &sessionTerminal{stdin: strings.NewReader("")})
			checkSessionEnd(t, err, &stdout, &stderr, sessionEnd{code: tt.wantCode, out: tt.wantOut, stderr: tt.wantStderr})
		})
	}
}

// TestKeepAlive checks that an SSH connection whose far end stops
// answering is given up, and one that answers is kept.
func TestKeepAlive(t *testing.T) {
	const interval, timeout = 20 * time.Millisecond, 300 * time.Millisecond
	for _, silent := range []bool{false, true} {
		t.Run(map[bool]string{false: "answering", true: "silent"}[silent], func(t *testing.T) {
			client, server := tcpPair(t)
			defer client.Close()
			fakeSSHServer(t, server, silent, func(ssh.Channel) {})
			sc, chans, reqs, err := ssh.NewClientConn(client, "dev", &ssh.ClientConfig{
				User: "me", HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: sshTestTimeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := ssh.NewClient(sc, chans, reqs)
			defer c.Close()
			done := make(chan struct{})
			ended := make(chan struct{})
			var lost error
			go func() {
				defer close(ended)
				keepAlive(sc, interval, timeout, done, func(err error) { lost = err })
			}()
			if silent {
				select {
				case <-ended:
				case <-time.After(sshTestTimeout):
					t.Fatal("keepAlive did not give up on a silent connection")
				}
				if lost == nil {
					t.Error("no reason given")
				}
				if _, _, err := sc.SendRequest("x", true, nil); err == nil {
					t.Error("the connection is still open")
				}
				close(done)
				return
			}
			select {
			case <-ended:
				t.Fatalf("keepAlive gave up on an answering connection: %v", lost)
			case <-time.After(3 * timeout):
			}
			close(done)
			<-ended
		})
	}
}

// TestPipeStdio checks that the --stdio bridge says why when the tunnel
// ended its connection (which reads as a plain EOF), and succeeds when the
// workspace closed it.
func TestPipeStdio(t *testing.T) {
	goneErr := errors.New("lost the connection to me/dev: its agent stopped answering")
	for _, tc := range []struct {
		name string
		gone error
	}{{"closed by the workspace", nil}, {"ended by the tunnel", goneErr}} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t)
			defer client.Close()
			go func() {
				server.Write([]byte("SSH-2.0-x\r\n"))
				server.Close()
			}()
			var stdout bytes.Buffer
			r := &root{env: &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: io.Discard, Getenv: func(string) string { return "" }}}
			err := r.pipeStdio(client, func() error { return tc.gone })
			if !errors.Is(err, tc.gone) || (tc.gone == nil && err != nil) {
				t.Errorf("pipeStdio = %v, want %v", err, tc.gone)
			}
			if stdout.String() != "SSH-2.0-x\r\n" {
				t.Errorf("stdout = %q", stdout.String())
			}
		})
	}
}

// sessionEnd is how a session should end: code is the CLI's exit code (-1:
// success), unless err names the error it must fail with; out is all of
// stdout, and stderr must contain what it says.
type sessionEnd struct {
	code   int
	err    string
	out    []byte
	stderr string
}

// checkSessionEnd checks a session's result (err from runSSH or runExec)
// and what it wrote against want.
func checkSessionEnd(t *testing.T, err error, stdout, stderr *bytes.Buffer, want sessionEnd) {
	t.Helper()
	var ex *exitError
	switch {
	case want.err != "":
		if err == nil || !strings.Contains(err.Error(), want.err) {
			t.Errorf("session = %v, want %q", err, want.err)
		}
	case want.code == -1 && err != nil:
		t.Errorf("session = %v, want success", err)
	case want.code >= 0 && (!errors.As(err, &ex) || ex.code != want.code):
		t.Errorf("session = %v, want exit code %d", err, want.code)
	}
	if !bytes.Equal(stdout.Bytes(), want.out) {
		t.Errorf("stdout has %d bytes, want %d", stdout.Len(), len(want.out))
	}
	if !strings.Contains(stderr.String(), want.stderr) {
		t.Errorf("stderr = %q, want it to say %q", stderr.String(), want.stderr)
	}
}
