// Command tsgen writes the TypeScript declarations of a Go package's wire
// types (package internal/tsgen). The dashboard's are generated with
//
//	go generate ./site
//
// which runs it as `tsgen -o src/tether.gen.ts ..` in site/.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/tetherdev/tether/internal/tsgen"
)

func main() {
	out := flag.String("o", "", "file to write (default: standard output)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: tsgen [-o FILE] [PACKAGE-DIR]")
		flag.PrintDefaults()
	}
	flag.Parse()
	dir := "."
	switch flag.NArg() {
	case 0:
	case 1:
		dir = flag.Arg(0)
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "tsgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, out string) error {
	ts, err := tsgen.Generate(ctx, dir)
	if err != nil {
		return err
	}
	if out == "" {
		_, err := os.Stdout.Write(ts)
		return err
	}
	// Leave an up-to-date file alone, so that its time does not change.
	if old, err := os.ReadFile(out); err == nil && bytes.Equal(old, ts) {
		return nil
	}
	return os.WriteFile(out, ts, 0o644)
}
