package cli

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf16"
)

func TestUTF16Decoder(t *testing.T) {
	face := utf16.Encode([]rune("😀")) // a surrogate pair
	tests := []struct {
		name  string
		reads [][]uint16 // what the console returns, read by read
		want  string
	}{
		{"ASCII and control characters", [][]uint16{{'l', 's', '\r', 0x03, 0x1a, 0x1b, '[', 'A'}}, "ls\r\x03\x1a\x1b[A"},
		{"accents", [][]uint16{utf16.Encode([]rune("héllo wörld"))}, "héllo wörld"},
		{"a pair in one read", [][]uint16{face}, "😀"},
		{"a pair split across reads", [][]uint16{{'a', face[0]}, {face[1], 'b'}}, "a😀b"},
		{"a lone high surrogate", [][]uint16{{face[0], 'x'}}, "\uFFFDx"},
		{"a lone low surrogate", [][]uint16{{face[1], 'x'}}, "\uFFFDx"},
		{"two high surrogates", [][]uint16{{face[0]}, {face[0], face[1]}}, "\uFFFD😀"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d utf16Decoder
			var got []byte
			for _, r := range tc.reads {
				got = d.decode(got, r)
			}
			if string(got) != tc.want {
				t.Errorf("decoded %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFollowSize(t *testing.T) {
	sizes := [][2]int{
		{80, 24},  // unchanged from the start: not sent
		{100, 30}, // sent
		{100, 30}, // unchanged: not sent
		{0, 0},    // a failed read: skipped
		{120, 40}, // sent
		{80, 24},  // back to the first size: sent
	}
	tick := make(chan struct{})
	stop := make(chan struct{})
	var (
		mu      sync.Mutex
		i       int
		changes [][2]int
	)
	size := func() (int, int, error) {
		mu.Lock()
		defer mu.Unlock()
		s := sizes[i]
		i++
		if s == [2]int{} {
			return 0, 0, errTest
		}
		return s[0], s[1], nil
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		followSize(tick, stop, [2]int{80, 24}, size, func(cols, rows int) {
			mu.Lock()
			changes = append(changes, [2]int{cols, rows})
			mu.Unlock()
		})
	})
	for range sizes {
		select {
		case tick <- struct{}{}:
		case <-time.After(time.Minute):
			t.Fatal("followSize stopped taking ticks")
		}
	}
	close(stop)
	wg.Wait()
	want := [][2]int{{100, 30}, {120, 40}, {80, 24}}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for k := range want {
		if changes[k] != want[k] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
}

type testError string

func (e testError) Error() string { return string(e) }

const errTest = testError("no console")

func TestUnsupportedCommand(t *testing.T) {
	for _, args := range [][]string{{"frob"}, {"frob", "--url", "https://x", "--token", "t"}, {"frob", "--help"}, {"frob", "extra"}} {
		var stdout, stderr bytes.Buffer
		env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
		root := Root(env)
		root.AddCommand(UnsupportedCommand("frob", "Frobnicate", "frob does not run on this system yet"))
		code := Run(t.Context(), root, env, args)
		if code != 1 || stderr.String() != "error: frob does not run on this system yet\n" || stdout.Len() != 0 {
			t.Errorf("tether %s: exit %d, stdout %q, stderr %q; want exit 1 and the reason alone",
				strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
	}
}
