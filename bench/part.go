package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/tetherdev/tether/internal/harness"
)

// part is the harness.T of a part of the bench that runs real processes
// through internal/harness, as tests do with their *testing.T: Errorf
// records a failure, Fatalf records one and ends what run is running (a
// panic that run recovers), and the Cleanup functions (the processes'
// ends) run at close.
type part struct {
	ctx  context.Context
	name string
	dir  string // where TempDir makes directories
	logf func(format string, args ...any)

	mu       sync.Mutex
	errs     []string
	cleanups []func()
	temps    int
}

// partFatal is what Fatalf panics with, for run to recover.
type partFatal struct{}

var _ harness.T = (*part)(nil)

// newPart returns a part whose processes' directories go under dir. ctx
// ends its waits (the bench is interrupted).
func newPart(ctx context.Context, name, dir string, logf func(string, ...any)) *part {
	return &part{ctx: ctx, name: name, dir: dir, logf: logf}
}

// run calls fn and returns its error, or else the failures reported
// through the part while it ran.
func (p *part) run(fn func() error) (err error) {
	p.mu.Lock()
	before := len(p.errs)
	p.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(partFatal); !ok {
				panic(r)
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if err == nil && len(p.errs) > before {
			err = errors.New(strings.Join(p.errs[before:], "\n"))
		}
	}()
	return fn()
}

// close runs the cleanups, the last registered first: the part's
// processes end.
func (p *part) close() {
	p.mu.Lock()
	cs := p.cleanups
	p.cleanups = nil
	p.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (p *part) Helper()                  {}
func (p *part) Context() context.Context { return p.ctx }

func (p *part) Cleanup(fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cleanups = append(p.cleanups, fn)
}

func (p *part) TempDir() string {
	p.mu.Lock()
	p.temps++
	dir := filepath.Join(p.dir, fmt.Sprintf("%s-%d", p.name, p.temps))
	p.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		p.Fatalf("temporary directory: %v", err)
	}
	return dir
}

// Logf reports on stderr. The harness logs a failed part's processes'
// output this way: their last lines are enough there.
func (p *part) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if first, rest, ok := strings.Cut(msg, "\n"); ok && strings.Count(rest, "\n") > logLines {
		msg = first + "\n…\n" + harness.Tail(rest, logLines)
	}
	p.logf("%s: %s", p.name, msg)
}

// logLines is how many lines of a long message Logf shows.
const logLines = 40

func (p *part) Errorf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

func (p *part) Fatalf(format string, args ...any) {
	p.Errorf(format, args...)
	panic(partFatal{})
}

func (p *part) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.errs) > 0
}
