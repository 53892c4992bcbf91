package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

// The ssh load test of issue 10: many concurrent `tether ssh WS -- seq 1
// N` on many agents, in rounds, counting every line. Under this load the
// agent used to drop the output of a command that had exited ("seq 1 5000"
// printed nothing and exited 0), because it cut a copy of the output that
// had been starved of CPU for a second. It runs twice: as it is, and with
// the agents stopped on purpose: at random moments an agent process is
// stopped (SIGSTOP) for sshLoadFreeze and then continued, as a busy
// machine may stall it, while the programs of its sessions, processes of
// their own, run on and exit.
//
// Stopping a whole process stalls the copies and the timers that judged
// them alike, so the stopped phase checks that nothing is lost or hangs
// when agents stall; it did not make the old agent lose output (0 lines
// lost in 200 sessions). The copies alone are slowed, which only a test
// hook can do, in agent/sshd's TestLoadStarvedCopies, at the same size.

// sshLoadSessionTimeout is how long one session may take before it counts
// as hung. Generous: at the size a session takes tens of seconds
// on two cores, and a slow session is not a hung one. A hung CLI is sent
// SIGQUIT, so that its goroutines are in its stderr, and killed
// sshLoadQuitGrace later.
const (
	sshLoadSessionTimeout = 10 * time.Minute
	sshLoadQuitGrace      = 5 * time.Second
)

// sshLoadAgentEnv keeps the sessions' shells from running the machine
// user's ~/.bashrc: bash runs it for a command over SSH (it sees
// SSH_CLIENT) unless it is a nested shell. What a user's startup files do
// is not what this measures, and on a shared machine they can dominate:
// with pyenv's `init` in ~/.bashrc, 60 concurrent sessions queued on one
// lock file for tens of seconds each, and one killed mid-way left the lock
// behind, stalling every later shell on the machine for 60 s.
const sshLoadAgentEnv = "SHLVL=1"

// sshLoadStats is what one phase of the load test saw.
type sshLoadStats struct {
	sessions    int
	rounds      int
	lostLines   int // lines missing from sessions' output, over all sessions
	lostSilent  int // sessions that exited 0 with lines missing
	lostAny     int // sessions with lines missing
	hangs       int // sessions killed after sshLoadSessionTimeout
	failed      int // sessions that exited non-zero (not hung)
	freezes     int // agent stops during the phase
	durations   []time.Duration
	wall        time.Duration
	firstFailed string // what the first failure printed
	firstHang   string // the stderr (goroutine dump) of the first hung CLI
}

// runSSHLoad starts a deployment of its own with cfg.sshLoadAgents
// workspaces and runs the two phases.
func runSSHLoad(ctx context.Context, cfg *config, res *results, dir string) error {
	p := newPart(ctx, "sshload", dir, cfg.logf)
	defer p.close()
	return p.run(func() error { return sshLoad(ctx, cfg, res, p) })
}

func sshLoad(ctx context.Context, cfg *config, res *results, p *part) error {
	x := harness.Tether{Bin: cfg.tether}
	dep := harness.StartDeployment(p, x.StartServer(p), harness.DeploymentOptions{
		Workspace: "bench",
		AgentEnv:  []string{sshLoadAgentEnv},
	})
	workspaces := []string{dep.Workspace}
	agents := []*harness.Proc{dep.Agent}
	for i := 1; i < cfg.sshLoadAgents; i++ {
		name := fmt.Sprintf("load%d", i)
		token, url := dep.User.CreateWorkspace(name)
		workspaces = append(workspaces, name)
		agents = append(agents, x.Start(p, "agent "+name, []string{"TETHER_AGENT_TOKEN=" + token, sshLoadAgentEnv}, "agent", "--url", url))
	}
	if err := awaitAgents(ctx, dep.User, workspaces); err != nil {
		return err
	}
	cfg.logf("sshload: %d agents connected", len(agents))

	for _, stopped := range []bool{false, true} {
		name := "sshload"
		if stopped {
			name = "sshload/stopped"
		}
		st, err := sshLoadPhase(ctx, cfg, dep, workspaces, agents, stopped)
		if err != nil {
			return err
		}
		s := summarize(st.durations)
		note := fmt.Sprintf("%d × `ssh -- seq 1 %d` in %d rounds of %d on %d agents in %.0f s; session p50 %.0f ms, p99 %.0f ms, max %.0f ms",
			st.sessions, cfg.sshLoadLines, st.rounds, cfg.sshLoadConcurrency, len(agents), st.wall.Seconds(),
			millis(s.P50), millis(s.P99), millis(s.Max))
		if stopped {
			note += fmt.Sprintf("; agents stopped %d times for %s each", st.freezes, cfg.sshLoadFreeze)
		}
		if st.failed > 0 {
			note += fmt.Sprintf("; %d exited non-zero, first: %s", st.failed, st.firstFailed)
		}
		res.lower(name+"/lost-lines", float64(st.lostLines), "lines", note)
		res.lower(name+"/lost-sessions", float64(st.lostAny), "sessions",
			fmt.Sprintf("%d of them exited 0", st.lostSilent))
		res.lower(name+"/hangs", float64(st.hangs), "sessions", fmt.Sprintf("not done after %s", sshLoadSessionTimeout))
		if st.firstHang != "" {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("tether-sshload-hang-%d.txt", time.Now().Unix())) // outlives the run
			if err := os.WriteFile(path, []byte(st.firstHang), 0o644); err == nil {
				cfg.logf("sshload: the first hung CLI's goroutines are in %s", path)
			}
		}
		res.lower(name+"/failed", float64(st.failed), "sessions", note)
		res.lower(name+"/session-p50", millis(s.P50), "ms", note)
		res.lower(name+"/session-p99", millis(s.P99), "ms", note)
	}
	return nil
}

// sshLoadPhase runs rounds of cfg.sshLoadConcurrency sessions, spread over
// the workspaces, until cfg.sshLoadSessions have run.
func sshLoadPhase(ctx context.Context, cfg *config, dep *harness.Deployment, workspaces []string, agents []*harness.Proc, stopped bool) (*sshLoadStats, error) {
	var want strings.Builder
	for i := 1; i <= cfg.sshLoadLines; i++ {
		want.WriteString(strconv.Itoa(i))
		want.WriteByte('\n')
	}
	expected := want.String()
	command := fmt.Sprintf("seq 1 %d", cfg.sshLoadLines)

	st := &sshLoadStats{}
	agentOf := map[string]*harness.Proc{}
	for i, ws := range workspaces {
		agentOf[ws] = agents[i]
	}
	var freezer *freezer
	if stopped {
		freezer = startFreezer(agents, cfg.sshLoadFreeze)
	}
	start := time.Now()
	var mu sync.Mutex
	for next := 0; st.sessions < cfg.sshLoadSessions; st.rounds++ {
		if err := ctx.Err(); err != nil {
			if freezer != nil {
				freezer.stop()
			}
			return nil, err
		}
		var wg sync.WaitGroup
		for range cfg.sshLoadConcurrency {
			ws := workspaces[next%len(workspaces)]
			next++
			wg.Go(func() {
				r := runLoadSession(ctx, dep, ws, command)
				mu.Lock()
				defer mu.Unlock()
				if r.err != nil && !r.hung && st.failed == 0 {
					// The first failure in full, with its agent's last
					// words, for whoever has to find out why.
					cfg.logf("sshload: ssh %s failed (%v) after %s:\n%s\nits agent's log ends:\n%s",
						ws, r.err, r.duration.Round(time.Millisecond), strings.TrimSpace(r.stderr), harness.Tail(agentOf[ws].Output(), tailLines))
				}
				st.add(r, expected)
			})
		}
		wg.Wait()
		cfg.logf("sshload%s: round %d: %d sessions, %d lines lost, %d hung, %d failed",
			map[bool]string{true: " (agents stopped)"}[stopped], st.rounds+1, st.sessions, st.lostLines, st.hangs, st.failed)
	}
	st.wall = time.Since(start)
	if freezer != nil {
		st.freezes = freezer.stop()
	}
	return st, nil
}

// loadSession is the outcome of one `tether ssh`.
type loadSession struct {
	stdout   string
	stderr   string
	err      error
	hung     bool
	duration time.Duration
}

func runLoadSession(ctx context.Context, dep *harness.Deployment, ws, command string) loadSession {
	sctx, cancel := context.WithTimeout(ctx, sshLoadSessionTimeout)
	defer cancel()
	cmd := dep.User.Cmd(sctx, "ssh", ws, "--", command)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = sshLoadQuitGrace
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	t0 := time.Now()
	err := cmd.Run()
	return loadSession{
		stdout:   out.String(),
		stderr:   errOut.String(),
		err:      err,
		hung:     errors.Is(sctx.Err(), context.DeadlineExceeded),
		duration: time.Since(t0),
	}
}

func (st *sshLoadStats) add(r loadSession, expected string) {
	st.sessions++
	st.durations = append(st.durations, r.duration)
	if r.hung {
		st.hangs++
		if st.firstHang == "" {
			st.firstHang = r.stderr
		}
		return
	}
	if r.stdout != expected {
		st.lostAny++
		st.lostLines += missingLines(r.stdout, expected)
		if r.err == nil {
			st.lostSilent++
		}
	}
	if r.err != nil {
		st.failed++
		if st.firstFailed == "" {
			st.firstFailed = fmt.Sprintf("%v: %s", r.err, lastLine(r.stderr))
		}
	}
}

// lastLine is the last non-empty line of s: where a CLI says why it
// failed, after its progress messages.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// missingLines counts the lines of expected that got does not have where
// they belong: got must be a prefix of expected to count only the tail.
func missingLines(got, expected string) int {
	want := strings.Count(expected, "\n")
	if !strings.HasPrefix(expected, got) {
		// Damaged rather than cut short: count what matches line by line.
		g, w := strings.Split(got, "\n"), strings.Split(expected, "\n")
		same := 0
		for i := 0; i < len(g) && i < len(w); i++ {
			if g[i] == w[i] {
				same++
			}
		}
		return want - min(same, want)
	}
	return want - strings.Count(got, "\n")
}

// freezer stops random agents for a while, one after another, so that
// about a quarter of them are stopped at any time.
type freezer struct {
	cancel context.CancelFunc
	done   chan int // the number of stops, when it has ended
}

func startFreezer(agents []*harness.Proc, d time.Duration) *freezer {
	ctx, cancel := context.WithCancel(context.Background())
	f := &freezer{cancel: cancel, done: make(chan int, 1)}
	interval := max(d*4/time.Duration(max(len(agents), 1)), 10*time.Millisecond)
	go func() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		frozen := map[int]bool{}
		stops := 0
		t := time.NewTicker(interval)
		defer t.Stop()
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
			}
			pid := agents[rand.N(len(agents))].Cmd.Process.Pid
			mu.Lock()
			if frozen[pid] {
				mu.Unlock()
				continue
			}
			frozen[pid] = true
			mu.Unlock()
			if syscall.Kill(pid, syscall.SIGSTOP) != nil {
				continue
			}
			stops++
			wg.Go(func() {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				syscall.Kill(pid, syscall.SIGCONT)
				mu.Lock()
				delete(frozen, pid)
				mu.Unlock()
			})
		}
		wg.Wait()
		f.done <- stops
	}()
	return f
}

// stop ends the freezing, continues every stopped agent, and returns how
// many stops there were.
func (f *freezer) stop() int {
	f.cancel()
	return <-f.done
}

// awaitAgents polls `tether list` until the agents of all the named
// workspaces show as connected.
func awaitAgents(ctx context.Context, u *harness.User, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, harness.StartTimeout+time.Duration(len(names))*time.Second)
	defer cancel()
	for {
		out, _, err := cli(ctx, u, "list", "--output", "json")
		if err == nil {
			connected, err := parseConnected(out)
			if err != nil {
				return err
			}
			missing := 0
			for _, n := range names {
				if !connected[n] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agents never all connected: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// parseConnected reads which workspaces `tether list --output json` shows
// with a connected agent.
func parseConnected(out string) (map[string]bool, error) {
	var ws []struct {
		Name        string `json:"name"`
		AgentStatus string `json:"agent_status"`
	}
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		return nil, fmt.Errorf("list --output json printed %q: %w", out, err)
	}
	connected := map[string]bool{}
	for _, w := range ws {
		connected[w.Name] = w.AgentStatus == "connected"
	}
	return connected, nil
}
