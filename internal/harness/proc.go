package harness

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a running process whose output is captured: stdout and stderr
// interleaved in Output, and stdout line by line on Lines.
type Proc struct {
	Name string
	Cmd  *exec.Cmd

	t     T
	lines chan string
	done  chan struct{}
	err   error // what Cmd.Wait returned; set before done closes

	mu  sync.Mutex
	out bytes.Buffer // stdout and stderr, interleaved
}

// Output is kept whole up to outputLimit, then only its last outputKeep
// bytes: a bench that runs for minutes with debug logs must not grow
// without bound, and what a test looks for is far below either.
const (
	outputLimit = 16 << 20
	outputKeep  = 8 << 20
)

// linesBuffered is how many stdout lines wait for a reader of Lines; more
// are dropped from Lines (never from Output) rather than stall the
// process.
const linesBuffered = 4096

// Start runs cmd in a process group of its own with env added to a clean
// environment, captures its output, and kills it (and the processes it
// started) when the test ends. cmd's Stdin may be set; its Stdout, Stderr,
// Env and SysProcAttr are the harness's.
func Start(t T, name string, cmd *exec.Cmd, env []string) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, t: t, lines: make(chan string, linesBuffered), done: make(chan struct{})}
	cmd.Env = append(CleanEnv(), env...)
	// A group of its own, so that Kill reaches what it starts (the agent's
	// shells). Not Pdeathsig: it fires when the forking OS thread exits,
	// and natlab ends the threads it locks into namespaces, which killed
	// the lab's server mid-run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	cmd.Stderr = procWriter{p}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			procWriter{p}.Write([]byte(line + "\n"))
			select {
			case p.lines <- line:
			default:
			}
		}
		if sc.Err() != nil {
			// A line too long to scan: keep the rest in Output, and keep
			// the process from blocking on a full pipe.
			io.Copy(procWriter{p}, stdout)
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.Output())
		}
	})
	return p
}

// procWriter appends to the process's output under its lock.
type procWriter struct{ p *Proc }

func (w procWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.out.Len()+len(b) > outputLimit {
		tail := append([]byte(nil), w.p.out.Bytes()[w.p.out.Len()-min(w.p.out.Len(), outputKeep):]...)
		w.p.out.Reset()
		w.p.out.Write(tail)
	}
	return w.p.out.Write(b)
}

// Output is what the process printed so far, stdout and stderr
// interleaved.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Lines delivers the process's stdout lines that no one has read yet.
func (p *Proc) Lines() <-chan string { return p.lines }

// Done is closed when the process has exited and its output is read.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (what exec.Cmd.Wait returned): nil for a
// zero exit status, an *exec.ExitError otherwise. Valid once Done is
// closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Kill stops the process hard (SIGKILL to its group) and waits for it.
func (p *Proc) Kill() {
	if p.Cmd.Process != nil {
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// Stop asks the process to end (SIGTERM to it alone, as a service manager
// would) and waits; one still running after StartTimeout fails the test
// and is killed.
func (p *Proc) Stop() {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StartTimeout):
		p.t.Errorf("%s did not stop on SIGTERM", p.Name)
		p.Kill()
	}
}

// WaitLine waits for a stdout line matching re and returns its submatches.
// Lines read while waiting are gone from Lines.
func (p *Proc) WaitLine(re *regexp.Regexp) []string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.t.Context(), StartTimeout)
	defer cancel()
	for {
		select {
		case line := <-p.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-p.done:
			// Every line was queued before done closed, but select picks
			// at random among ready cases: read what is left first.
			if m := p.matchQueued(re); m != nil {
				return m
			}
			p.t.Fatalf("%s exited (%v) before printing %q:\n%s", p.Name, p.err, re, Tail(p.Output(), tailLines))
		case <-ctx.Done():
			p.t.Fatalf("%s did not print %q within %s (%v):\n%s", p.Name, re, StartTimeout, ctx.Err(), Tail(p.Output(), tailLines))
		}
	}
}

// matchQueued reads the lines waiting in Lines until one matches re.
func (p *Proc) matchQueued(re *regexp.Regexp) []string {
	for {
		select {
		case line := <-p.lines:
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		default:
			return nil
		}
	}
}

// tailLines is how much of a process's output a failure shows.
const tailLines = 50

// Tail returns the last n lines of s, for error messages.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
