package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// goneTimeout is how soon a CLI must notice that the workspace's agent is
// gone (issue 10: about 15 s).
const goneTimeout = 15 * time.Second

// sessionPIDRE matches what the remote commands of these tests print
// first: the pid of the process that then sleeps, so that it can be ended
// (it outlives a killed agent, as it runs in a session of its own).
var sessionPIDRE = regexp.MustCompile(`^started (\d+)$`)

// startSleeper runs `tether ssh dev` with a command that sleeps, waits
// until it runs, and returns the CLI and the remote process's pid.
func startSleeper(t *testing.T, u *harness.User) (*harness.Proc, int) {
	t.Helper()
	ssh := here.Start(t, "ssh", u.Env, "ssh", "dev", "--", "echo started $$; exec sleep 600")
	pid, _ := strconv.Atoi(ssh.WaitLine(sessionPIDRE)[1])
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return ssh, pid
}

// waitExit waits up to d for p to exit and returns its exit code.
func waitExit(t *testing.T, p *harness.Proc, d time.Duration, what string) int {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(d):
		t.Fatalf("%s: still running %s later:\n%s", what, d, p.Output())
	}
	var ee *exec.ExitError
	if errors.As(p.Err(), &ee) {
		return ee.ExitCode()
	}
	if p.Err() != nil {
		t.Fatalf("%s: %v", what, p.Err())
	}
	return 0
}

// upperServer answers each line it reads with the line in upper case: a
// workspace service for port forwards.
func upperServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintln(c, strings.ToUpper(sc.Text()))
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// forwardedConn opens a connection through a port forward and checks that
// it answers.
func forwardedConn(t *testing.T, port int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), harness.StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(harness.CommandTimeout))
	rd := bufio.NewReader(c)
	fmt.Fprintln(c, "hello")
	if line, err := rd.ReadString('\n'); err != nil || line != "HELLO\n" {
		t.Fatalf("the forward answered %q, %v", line, err)
	}
	return c, rd
}

// TestAgentKilledMidSession kills a workspace's agent (SIGKILL) under an
// open `tether ssh` session, an OpenSSH session through `tether ssh
// --stdio`, and a forwarded connection: the CLIs must exit non-zero with a
// message within 15 s, the forwarded connection must close, and once the
// agent is back, new sessions and connections work.
// Then the agent is killed and started again at once: the open session
// must end as promptly, saying the agent restarted. Both used to hang
// forever.
func TestAgentKilledMidSession(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	agent := here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	service := upperServer(t)
	local := freePort(t, "tcp")
	pf := here.Start(t, "port-forward", u.Env, "port-forward", "dev", "--tcp", fmt.Sprintf("%d:%d", local, service))
	pf.WaitLine(regexp.MustCompile(`Press Ctrl\+C`))
	fwd, fwdRd := forwardedConn(t, local)
	ssh, _ := startSleeper(t, u)
	// OpenSSH through `tether ssh --stdio`, when it is installed.
	var openssh *harness.Proc
	if _, err := exec.LookPath("ssh"); err == nil {
		openssh = harness.Start(t, "openssh", exec.Command("ssh", append(sshArgs(u), "dev", "echo started $$; exec sleep 600")...), u.Env)
		pid, _ := strconv.Atoi(openssh.WaitLine(sessionPIDRE)[1])
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}

	killed := time.Now()
	agent.Kill()
	code := waitExit(t, ssh, goneTimeout, "tether ssh after the agent was killed")
	took := time.Since(killed)
	t.Logf("FIGURE tether ssh exited %s after the agent was killed", took.Round(100*time.Millisecond))
	if code == 0 {
		t.Errorf("tether ssh exited 0 after losing its agent")
	}
	if out := ssh.Output(); !strings.Contains(out, "stopped answering") {
		t.Errorf("tether ssh said %q; want it to say the agent stopped answering", out)
	}
	if openssh != nil {
		if code := waitExit(t, openssh, goneTimeout-time.Since(killed)+time.Second, "OpenSSH through tether ssh --stdio after the agent was killed"); code == 0 {
			t.Error("OpenSSH exited 0 after losing the agent")
		}
		if out := openssh.Output(); !strings.Contains(out, "stopped answering") {
			t.Errorf("OpenSSH's proxy said %q; want it to say the agent stopped answering", out)
		}
	}
	// The forwarded connection ends too (its far end is gone).
	fwd.SetDeadline(time.Now().Add(goneTimeout - took + time.Second))
	if _, err := fwdRd.ReadString('\n'); err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		t.Errorf("the forwarded connection stayed open after the agent was killed: %v", err)
	}

	// The agent comes back: new sessions and forwarded connections work.
	agent = here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected again", func() bool { return u.AgentStatus("dev") == "connected" })
	if out := u.Must("ssh", "dev", "--", "echo", "back"); out != "back\n" {
		t.Errorf("a new session after the restart printed %q", out)
	}
	forwardedConn(t, local)

	// Killed and started again at once: the new process has a new key.
	ssh, _ = startSleeper(t, u)
	restarted := time.Now()
	agent.Kill()
	here.StartAgent(t, agentURL, token)
	code = waitExit(t, ssh, goneTimeout, "tether ssh after the agent restarted")
	t.Logf("FIGURE tether ssh exited %s after the agent was restarted", time.Since(restarted).Round(100*time.Millisecond))
	if code == 0 {
		t.Errorf("tether ssh exited 0 after its agent restarted")
	}
	if out := ssh.Output(); !strings.Contains(out, "restarted") && !strings.Contains(out, "stopped answering") {
		t.Errorf("tether ssh said %q; want it to say the agent restarted", out)
	}
	if !strings.Contains(pf.Output(), "forwarded connections were closed") {
		t.Errorf("port-forward did not say why its connections ended:\n%s", pf.Output())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, io.EOF)
}

// TestRelayedSessionSurvivesServerRestart restarts the server under a
// relayed `tether ssh` session, which loses its relay (the server's) and
// both peers' coordination for the restart: the session must carry on
// afterwards, and still be there well after the CLI's wait for a lost agent
// (10 s) has passed. Only an agent that is gone may end a session.
func TestRelayedSessionSurvivesServerRestart(t *testing.T) {
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	here.StartAgent(t, agentURL, token)
	harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

	in, stdin := io.Pipe()
	defer stdin.Close()
	cmd := exec.Command(here.Bin, "ssh", "dev", "--disable-direct", "--", "while read l; do echo got-$l; done")
	cmd.Stdin = in
	ssh := harness.Start(t, "ssh", cmd, u.Env)
	echo := func(word string) {
		t.Helper()
		fmt.Fprintln(stdin, word)
		ssh.WaitLine(regexp.MustCompile("^got-" + word + "$"))
	}
	echo("before")

	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Stop()
	restarted := time.Now()
	srv = here.StartServerWith(t, harness.ServerOptions{DataDir: srv.DataDir, Addr: addr})
	harness.WaitFor(t, harness.StatusTimeout, "agent reconnected", func() bool { return u.AgentStatus("dev") == "connected" })
	echo("after")
	// Longer than the CLI waits for a lost agent, counted from the restart.
	for time.Since(restarted) < 2*goneGrace {
		select {
		case <-ssh.Done():
			t.Fatalf("the session ended %s after the server restarted:\n%s", time.Since(restarted).Round(100*time.Millisecond), ssh.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
	echo("later")
}

// goneGrace is how long a CLI waits for a lost agent to answer
// (tunnel.DefaultLostPeerGrace).
const goneGrace = 10 * time.Second
