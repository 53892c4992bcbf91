package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The bench starts copies of its own binary as peer and coordinator
	// processes; under test, that binary is this one.
	if code, ok := childMode(os.Args[1:]); ok {
		os.Exit(code)
	}
	goleak.VerifyTestMain(m)
}
