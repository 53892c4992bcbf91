package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeT is a T whose failures are recorded instead of failing the test
// that uses it, so that tests can check how the harness fails.
type fakeT struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	fatals   []string
	errs     []string
	cleanups []func()
}

func (f *fakeT) Helper()                  {}
func (f *fakeT) Context() context.Context { return f.ctx }
func (f *fakeT) TempDir() string          { return f.t.TempDir() }
func (f *fakeT) Logf(string, ...any)      {}

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.fatals)+len(f.errs) > 0
}

// runFake runs fn with a fakeT in a goroutine of its own, as testing runs
// a test, then the fakeT's cleanups, and returns the fakeT.
func runFake(t *testing.T, ctx context.Context, fn func(f *fakeT)) *fakeT {
	t.Helper()
	f := &fakeT{t: t, ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	select {
	case <-done:
	case <-time.After(2 * CommandTimeout):
		t.Fatal("the harness did not give up")
	}
	for _, c := range slices.Backward(f.cleanups) {
		c()
	}
	return f
}

func sh(script string) *exec.Cmd { return exec.Command("sh", "-c", script) }

func TestStartCapturesOutput(t *testing.T) {
	p := Start(t, "sh", sh(`echo one; echo two >&2; echo "$HARNESS_TEST"; exit 3`), []string{"HARNESS_TEST=three"})
	if m := p.WaitLine(regexp.MustCompile(`^(th\w+)$`)); m[1] != "three" {
		t.Errorf("WaitLine matched %q", m)
	}
	var ee *exec.ExitError
	if err := p.Err(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", err)
	}
	for _, want := range []string{"one\n", "two\n", "three\n"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("output %q lacks %q", p.Output(), want)
		}
	}
}

func TestCleanEnv(t *testing.T) {
	t.Setenv("TETHER_HARNESS_LEAK", "from the shell")
	t.Setenv("HARNESS_KEPT", "kept")
	env := CleanEnv()
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "TETHER_") }) {
		t.Errorf("CleanEnv kept a TETHER_ variable: %v", env)
	}
	if !slices.Contains(env, "HARNESS_KEPT=kept") {
		t.Error("CleanEnv dropped another variable")
	}
	p := Start(t, "env", exec.Command("env"), []string{"TETHER_GIVEN=yes"})
	<-p.Done()
	if out := p.Output(); strings.Contains(out, "TETHER_HARNESS_LEAK") || !strings.Contains(out, "TETHER_GIVEN=yes") {
		t.Errorf("a process's environment:\n%s", out)
	}
}

// processGone reports whether pid has exited (a zombie no one reaps counts
// as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

func TestKillEndsTheGroup(t *testing.T) {
	p := Start(t, "sh", sh(`sleep 600 & echo "child $!"; wait`), nil)
	child, _ := strconv.Atoi(p.WaitLine(regexp.MustCompile(`^child (\d+)$`))[1])
	p.Kill()
	WaitFor(t, StartTimeout, "the child to be gone", func() bool { return processGone(child) })
}

func TestStop(t *testing.T) {
	p := Start(t, "sh", sh(`trap 'echo terminated; exit 0' TERM; echo ready; while :; do sleep 0.05; done`), nil)
	p.WaitLine(regexp.MustCompile(`^ready$`))
	p.Stop()
	if err := p.Err(); err != nil || !strings.Contains(p.Output(), "terminated") {
		t.Errorf("after Stop: %v\n%s", err, p.Output())
	}
}

func TestWaitLineFails(t *testing.T) {
	t.Run("exited first", func(t *testing.T) {
		f := runFake(t, t.Context(), func(f *fakeT) {
			p := Start(f, "quitter", sh(`echo bye; exit 1`), nil)
			p.WaitLine(regexp.MustCompile(`never`))
		})
		if len(f.fatals) != 1 || !strings.Contains(f.fatals[0], "quitter exited") || !strings.Contains(f.fatals[0], "bye") {
			t.Errorf("fatal: %q", f.fatals)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		f := runFake(t, ctx, func(f *fakeT) {
			p := Start(f, "sleeper", exec.Command("sleep", "600"), nil)
			p.WaitLine(regexp.MustCompile(`never`))
		})
		if len(f.fatals) != 1 || !strings.Contains(f.fatals[0], "sleeper did not print") {
			t.Errorf("fatal: %q", f.fatals)
		}
	})
}

func TestOutputKeepsItsTail(t *testing.T) {
	p := &Proc{}
	chunk := strings.Repeat("x", 1<<20-1) + "\n"
	for i := range outputLimit/len(chunk) + 4 {
		procWriter{p}.Write([]byte(strconv.Itoa(i) + chunk))
	}
	procWriter{p}.Write([]byte("last\n"))
	out := p.Output()
	if len(out) > outputLimit || !strings.HasSuffix(out, "last\n") {
		t.Errorf("output of %d bytes ending %q; want at most %d ending with the last line", len(out), Tail(out, 1), outputLimit)
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 1, ""},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// fakeTether writes a script that stands in for the tether binary: it
// prints its arguments and TETHER_CONFIG_DIR, reads stdin for "cat", and
// exits with the status that FAKE_EXIT names.
func fakeTether(t *testing.T) Tether {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tether")
	script := `#!/bin/sh
if [ "$1" = cat ]; then exec cat; fi
if [ "$1" = sleep ]; then exec sleep 600; fi
echo "args: $*"
echo "config: $TETHER_CONFIG_DIR"
[ -n "$FAKE_STDERR" ] && echo "$FAKE_STDERR" >&2
exit ${FAKE_EXIT:-0}
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return Tether{Bin: bin}
}

func TestUserCommands(t *testing.T) {
	x := fakeTether(t)
	u := x.NewUser(t)
	if out := u.Must("list", "--output", "json"); out != "args: list --output json\nconfig: "+u.ConfigDir+"\n" {
		t.Errorf("Must printed %q", out)
	}
	if out := u.MustInput("piped\n", "cat"); out != "piped\n" {
		t.Errorf("MustInput printed %q", out)
	}
	u.Env = append(u.Env, "FAKE_EXIT=4", "FAKE_STDERR=no such workspace")
	if r := u.Run("ssh", "x"); r.Code != 4 || r.Stderr != "no such workspace\n" {
		t.Errorf("Run = %+v", r)
	}
	if stderr := u.Fails("ssh", "x"); stderr != "no such workspace\n" {
		t.Errorf("Fails = %q", stderr)
	}
	if r, err := u.Exec(t.Context(), "", "ssh", "x"); err != nil || r.Code != 4 {
		t.Errorf("Exec of a failing command = %+v, %v; want its exit code and no error", r, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := u.Exec(ctx, "", "sleep"); err == nil || !strings.Contains(err.Error(), "tether sleep did not finish") {
		t.Errorf("Exec past its deadline = %v", err)
	}
}

func TestUserCommandsFail(t *testing.T) {
	x := fakeTether(t)
	for _, tc := range []struct {
		name string
		env  []string
		run  func(u *User)
		want string
	}{
		{"Must on a failure", []string{"FAKE_EXIT=1"}, func(u *User) { u.Must("list") }, "tether list: exit 1"},
		{"Fails on a success", nil, func(u *User) { u.Fails("list") }, "tether list succeeded, want failure"},
		{"Fails on a stack trace", []string{"FAKE_EXIT=2", "FAKE_STDERR=panic: oops"}, func(u *User) { u.Fails("list") }, "printed a stack trace"},
		{"a missing binary", nil, func(u *User) { u.x.Bin += ".missing"; u.Run("list") }, "tether list:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := runFake(t, t.Context(), func(f *fakeT) {
				u := x.NewUser(f)
				u.Env = append(u.Env, tc.env...)
				tc.run(u)
			})
			if len(f.fatals) != 1 || !strings.Contains(f.fatals[0], tc.want) {
				t.Errorf("fatal: %q, want one saying %q", f.fatals, tc.want)
			}
		})
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	WaitFor(t, StartTimeout, "the third try", func() bool { n++; return n == 3 })
	f := runFake(t, t.Context(), func(f *fakeT) {
		WaitFor(f, 100*time.Millisecond, "never", func() bool { return false })
	})
	if len(f.fatals) != 1 || !strings.Contains(f.fatals[0], "timed out after 100ms waiting for never") {
		t.Errorf("fatal: %q", f.fatals)
	}
}
