package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherdev/tether/execproto"
)

// fakeExecAgent serves one exec connection on conn: it reads the request,
// then calls behave with a way to send frames; behave ends the session
// (closing conn, or not).
func fakeExecAgent(t *testing.T, conn net.Conn, behave func(req execproto.Request, fr *execproto.Reader, send func(typ byte, p []byte))) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	wg.Go(func() {
		fr := execproto.NewReader(conn)
		typ, p, err := fr.Next()
		if err != nil || typ != execproto.FrameRequest {
			t.Errorf("the first frame: %q, %v", typ, err)
			return
		}
		req, err := execproto.ParseRequest(p)
		if err != nil {
			t.Errorf("the request: %v", err)
			return
		}
		behave(req, fr, func(typ byte, p []byte) { execproto.WriteFrame(conn, typ, p) })
	})
}

// TestRunExecExit checks how the end of a remote command becomes the CLI's
// exit over the exec protocol, as TestRunSSHExit does over SSH: its status
// passes through (128+N for a signal), its output is all written first,
// and a session that ends without a status is never a success.
func TestRunExecExit(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	goneErr := errors.New("the agent of me/dev restarted; the connection to the old one is gone")
	started := execproto.JSON(execproto.Started{Version: execproto.Version})
	exit := func(e execproto.Exit) []byte { return execproto.JSON(e) }
	tests := []struct {
		name       string
		behave     func(send func(byte, []byte), conn net.Conn)
		gone       error
		wantCode   int // -1: success
		wantOut    []byte
		wantStderr string
		wantErr    string
	}{
		{
			name: "output then success",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameStarted, started)
				for b := big; len(b) > 0; b = b[100000:] {
					send(execproto.FrameStdout, b[:min(len(b), 100000)])
					if len(b) <= 100000 {
						break
					}
				}
				send(execproto.FrameExit, exit(execproto.Exit{}))
			},
			wantCode: -1,
			wantOut:  big,
		},
		{
			name: "exit status and stderr pass through",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameStarted, started)
				send(execproto.FrameStdout, []byte("partial\n"))
				send(execproto.FrameStderr, []byte("oops\n"))
				send(execproto.FrameExit, exit(execproto.Exit{Status: 3}))
			},
			wantCode:   3,
			wantOut:    []byte("partial\n"),
			wantStderr: "oops\n",
		},
		{
			name: "killed by a signal",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameStarted, started)
				send(execproto.FrameExit, exit(execproto.Exit{Signal: "KILL", SignalNumber: 9}))
			},
			wantCode: 137,
		},
		{
			name: "closed without an exit status",
			behave: func(send func(byte, []byte), conn net.Conn) {
				send(execproto.FrameStarted, started)
				send(execproto.FrameStdout, []byte("half"))
				conn.Close()
			},
			wantCode:   exitConnectionLost,
			wantOut:    []byte("half"),
			wantStderr: "without an exit status",
		},
		{
			name: "agent gone",
			behave: func(send func(byte, []byte), conn net.Conn) {
				send(execproto.FrameStarted, started)
				send(execproto.FrameStdout, []byte("half"))
				conn.Close() // what the tunnel does when the agent is gone
			},
			gone:       goneErr,
			wantCode:   exitConnectionLost,
			wantOut:    []byte("half"),
			wantStderr: goneErr.Error(),
		},
		{
			name: "refused",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameError, []byte("start shell: no such file"))
			},
			wantErr: "start remote command: start shell: no such file",
		},
		{
			name: "accepted, then runs",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameAccepted, nil)
				send(execproto.FrameStarted, started)
				send(execproto.FrameStdout, []byte("ok"))
				send(execproto.FrameExit, exit(execproto.Exit{}))
			},
			wantCode: -1,
			wantOut:  []byte("ok"),
		},
		{
			name: "accepted, then refused",
			behave: func(send func(byte, []byte), _ net.Conn) {
				send(execproto.FrameAccepted, nil)
				send(execproto.FrameError, []byte("start shell: no such file"))
			},
			wantErr: "start remote command: start shell: no such file",
		},
		{
			// The agent stopped after taking the command: it may have
			// run, so it is not run again over SSH (no errNoExec).
			name: "accepted, then gone",
			behave: func(send func(byte, []byte), conn net.Conn) {
				send(execproto.FrameAccepted, nil)
				conn.Close()
			},
			wantErr: "the workspace took the command and closed the connection without saying it started; it may have run",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), sshTestTimeout)
			defer cancel()
			client, server := tcpPair(t)
			fakeExecAgent(t, server, func(_ execproto.Request, _ *execproto.Reader, send func(byte, []byte)) { tt.behave(send, server) })
			var stdout, stderr bytes.Buffer
			r := &root{env: &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}}
			in := startInputPump(strings.NewReader(""))
			defer in.close()
			_, err := r.runExec(ctx, client, newTimeline(slog.New(slog.DiscardHandler), time.Now()), func() error { return tt.gone }, "cmd", &sessionTerminal{}, in)
			checkSessionEnd(t, err, &stdout, &stderr, sessionEnd{code: tt.wantCode, err: tt.wantErr, out: tt.wantOut, stderr: tt.wantStderr})
		})
	}
}

// TestRunExecFallback: an agent that closes the exec connection without a
// word (an older one, whose exec port leads nowhere) makes runExec give up
// with errNoExec, and the input it had sent already, with the rest, is
// still there for SSH: nothing is lost.
func TestRunExecFallback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), sshTestTimeout)
	defer cancel()
	client, server := tcpPair(t)
	// The old agent takes the connection and closes it once the request
	// and the first input have come (sooner, in truth; later is the
	// harder case).
	agentDone := make(chan struct{})
	go func() {
		defer close(agentDone)
		defer server.Close()
		fr := execproto.NewReader(server)
		for {
			typ, _, err := fr.Next()
			if err != nil || typ == execproto.FrameStdin {
				return
			}
		}
	}()
	stdinR, stdinW := io.Pipe()
	in := startInputPump(stdinR)
	defer in.close()
	go stdinW.Write([]byte("first bytes\n"))
	r := &root{env: &Env{Stdin: stdinR, Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}}
	replay, err := r.runExec(ctx, client, newTimeline(slog.New(slog.DiscardHandler), time.Now()), func() error { return nil }, "cat", &sessionTerminal{}, in)
	<-agentDone
	if !errors.Is(err, errNoExec) {
		t.Fatalf("runExec = %v, want errNoExec", err)
	}
	go func() {
		stdinW.Write([]byte("second\n"))
		stdinW.Close()
	}()
	rest, err := io.ReadAll(in.reader(replay))
	if err != nil || string(rest) != "first bytes\nsecond\n" {
		t.Errorf("the input for SSH: %q, %v", rest, err)
	}
}

// TestRunExecKeepAlive checks that a session whose agent stops answering
// (its connection stays open, nothing comes) is given up with a reason and
// exit 255, and that one whose agent answers the keepalives is kept.
func TestRunExecKeepAlive(t *testing.T) {
	keepalive := [2]time.Duration{20 * time.Millisecond, 300 * time.Millisecond}
	for _, silent := range []bool{false, true} {
		t.Run(map[bool]string{false: "answering", true: "silent"}[silent], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), sshTestTimeout)
			defer cancel()
			client, server := tcpPair(t)
			fakeExecAgent(t, server, func(_ execproto.Request, fr *execproto.Reader, send func(byte, []byte)) {
				send(execproto.FrameStarted, execproto.JSON(execproto.Started{Version: execproto.Version}))
				deadline := time.Now().Add(3 * keepalive[1])
				for {
					typ, p, err := fr.Next()
					if err != nil {
						return
					}
					if typ == execproto.FrameKeepalive && !silent {
						send(execproto.FramePong, p)
						if time.Now().After(deadline) {
							send(execproto.FrameExit, execproto.JSON(execproto.Exit{Status: 4}))
						}
					}
				}
			})
			var stderr bytes.Buffer
			r := &root{env: &Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr, Getenv: func(string) string { return "" }}, keepalive: &keepalive}
			in := startInputPump(strings.NewReader(""))
			defer in.close()
			_, err := r.runExec(ctx, client, newTimeline(slog.New(slog.DiscardHandler), time.Now()), func() error { return nil }, "sleep 600", &sessionTerminal{}, in)
			var ex *exitError
			if !errors.As(err, &ex) {
				t.Fatalf("runExec = %v", err)
			}
			want, wantSaid := 4, ""
			if silent {
				want, wantSaid = exitConnectionLost, "did not answer"
			}
			if ex.code != want || !strings.Contains(stderr.String(), wantSaid) {
				t.Errorf("exit %d, stderr %q; want %d and %q", ex.code, stderr.String(), want, wantSaid)
			}
		})
	}
}
