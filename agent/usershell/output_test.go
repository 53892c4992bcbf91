package usershell

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// drainTimeout bounds each case; a drain that waits for a background
// holder would take it all.
const drainTimeout = 20 * time.Second

// TestDrainOutput checks the rule of DrainOutput with a reader that is
// starved (it starts reading only long after the grace period): queued
// output is never dropped, and a holder of the writing side does not keep
// the output open once everything queued has been read.
func TestDrainOutput(t *testing.T) {
	const grace = 50 * time.Millisecond
	tests := []struct {
		name   string
		pty    bool
		hold   bool // the writing side stays open, as a background process would keep it
		size   int
		starve time.Duration
	}{
		{name: "pipe, writer gone, reader starved", size: 60000, starve: 8 * grace},
		{name: "pipe, holder, reader starved", hold: true, size: 60000, starve: 8 * grace},
		{name: "pipe, holder, nothing queued", hold: true},
		{name: "pty, writer gone, reader starved", pty: true, size: 3000, starve: 8 * grace},
		{name: "pty, holder, reader starved", pty: true, hold: true, size: 3000, starve: 8 * grace},
		{name: "pty, holder, nothing queued", pty: true, hold: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r, w *os.File
			var err error
			if tt.pty {
				r, w, err = OpenPTY(Size{Rows: 24, Cols: 80})
				if err != nil {
					t.Skipf("no PTYs here: %v", err)
				}
			} else if r, w, err = os.Pipe(); err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			// No newlines: a terminal would turn them into CR LF.
			want := bytes.Repeat([]byte("x"), tt.size)
			if _, err := w.Write(want); err != nil {
				t.Fatal(err)
			}
			if !tt.hold {
				w.Close() // the program has exited and nobody else holds its output
			}

			var got bytes.Buffer
			readDone := make(chan struct{})
			go func() {
				defer close(readDone)
				time.Sleep(tt.starve) // the reader is not scheduled for a while
				buf := make([]byte, 1024)
				for {
					n, err := r.Read(buf)
					got.Write(buf[:n])
					if err != nil {
						return
					}
				}
			}()
			drained := make(chan struct{})
			start := time.Now()
			go func() {
				defer close(drained)
				DrainOutput(r, readDone, grace)
			}()
			select {
			case <-drained:
			case <-time.After(drainTimeout):
				t.Fatal("DrainOutput did not return: the holder kept the output open")
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("reader got %d bytes, want %d", got.Len(), len(want))
			}
			if d := time.Since(start); d < grace && tt.hold {
				t.Errorf("closed after %v, before the grace period of %v", d, grace)
			}
		})
	}
}
