package coalesce

import (
	"os"
	"testing"
	"time"
)

func TestGather(t *testing.T) {
	tests := []struct {
		name     string
		waiting  string // in the pipe before gather runs
		closeW   bool   // the writing side is closed too
		deadline time.Duration
		want     string
	}{
		{name: "takes what is waiting", waiting: "more output", deadline: time.Second, want: "first more output"},
		{name: "nothing waiting", deadline: time.Second, want: "first "},
		{name: "stops at the end of the output", waiting: "last", closeW: true, deadline: time.Second, want: "first last"},
		{name: "deadline passed", waiting: "later", deadline: -time.Second, want: "first "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close()
			if _, err := w.WriteString(tt.waiting); err != nil {
				t.Fatal(err)
			}
			if tt.closeW {
				w.Close()
			}
			buf := make([]byte, 64)
			n := copy(buf, "first ")
			n, err = gather(r, buf, n, time.Now().Add(tt.deadline))
			if err != nil {
				t.Fatalf("gather: %v", err)
			}
			if got := string(buf[:n]); got != tt.want {
				t.Errorf("gathered %q, want %q", got, tt.want)
			}
		})
	}
}

// TestGatherStopsWhenFull checks that gather never reads past its buffer,
// however much is waiting.
func TestGatherStopsWhenFull(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	w.WriteString("0123456789")
	buf := make([]byte, 4)
	n, err := gather(r, buf, 1, time.Now().Add(time.Second))
	if err != nil || n != 4 || string(buf) != "\x00012" {
		t.Fatalf("gather = %d, %v, %q; want 4 bytes, the first one untouched", n, err, buf)
	}
}
