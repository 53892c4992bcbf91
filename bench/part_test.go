package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestPart checks the bench's harness.T: a Fatalf ends only what run
// runs, and becomes its error; errors from before do not count again;
// cleanups run at close, the last first.
func TestPart(t *testing.T) {
	var logged []string
	p := newPart(t.Context(), "test", t.TempDir(), func(format string, args ...any) {
		logged = append(logged, fmt.Sprintf(format, args...))
	})
	var order []int
	p.Cleanup(func() { order = append(order, 1) })
	p.Cleanup(func() { order = append(order, 2) })

	reached := false
	err := p.run(func() error {
		p.Fatalf("the server did not start: %s", "timeout")
		reached = true
		return nil
	})
	if err == nil || err.Error() != "the server did not start: timeout" || reached {
		t.Errorf("run with Fatalf = %v (went on after Fatalf: %v)", err, reached)
	}
	if !p.Failed() {
		t.Error("Failed() is false after Fatalf")
	}
	if err := p.run(func() error { return nil }); err != nil {
		t.Errorf("a later run that fails nothing = %v", err)
	}
	want := errors.New("measured nothing")
	if err := p.run(func() error { return want }); err != want {
		t.Errorf("run returning an error = %v", err)
	}
	if err := p.run(func() error { p.Errorf("one"); p.Errorf("two"); return nil }); err == nil || err.Error() != "one\ntwo" {
		t.Errorf("run with Errorf = %v", err)
	}

	dir := p.TempDir()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() || dir == p.TempDir() {
		t.Errorf("TempDir %s: %v (or the same twice)", dir, err)
	}

	p.Logf("output of agent:\n%s", strings.Repeat("line\n", 100))
	if len(logged) != 1 || !strings.HasPrefix(logged[0], "test: output of agent:\n…\n") || strings.Count(logged[0], "\n") > logLines+2 {
		t.Errorf("a long log message came out as %q", logged)
	}

	p.close()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran in the order %v, want [2 1]", order)
	}
	p.close() // twice is harmless
	if len(order) != 2 {
		t.Errorf("cleanups ran again: %v", order)
	}
}

func TestPartPassesOtherPanics(t *testing.T) {
	p := newPart(t.Context(), "test", t.TempDir(), t.Logf)
	defer func() {
		if r := recover(); r != "a bug" {
			t.Errorf("recovered %v, want the bug's panic", r)
		}
	}()
	p.run(func() error { panic("a bug") })
}
