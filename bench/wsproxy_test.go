package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestEscapesSkipped checks that only the letters outside the terminal's
// escape sequences count as echoes, whatever the chunks they come in.
func TestEscapesSkipped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   string
	}{
		{"plain", []string{"abc"}, "abc"},
		{"bracketed paste", []string{"\x1b[?2004h> a"}, "a"},
		{"split CSI", []string{"\x1b[?20", "04hb", "c"}, "bc"},
		{"split after ESC", []string{"x\x1b", "[Ky"}, "xy"},
		{"two-byte escape", []string{"\x1b=d"}, "d"},
		{"OSC title, BEL", []string{"\x1b]0;user@host: ~\x07e"}, "e"},
		{"OSC title, ST", []string{"\x1b]0;title\x1b\\f"}, "f"},
		{"prompt and output", []string{"K7K\r\n> ", "g"}, "g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e escapes
			var got []byte
			for _, c := range tc.chunks {
				for i := 0; i < len(c); i++ {
					if !e.skip(c[i]) && c[i] >= 'a' && c[i] <= 'z' {
						got = append(got, c[i])
					}
				}
			}
			if string(got) != tc.want {
				t.Errorf("echoes %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHumanTypist checks the model the goal's row types by: bursts of 5
// to 20 keys 100–200 ms apart, each after an Enter and a pause of
// 0.5–3 s, 3.6 keys a second on average.
func TestHumanTypist(t *testing.T) {
	ty := humanTypist(rand.New(rand.NewPCG(1, 2)))
	ty() // the first key: its wait and Enter are not used
	var total time.Duration
	keys, burst := 1, 1
	for range 100000 {
		wait, enter := ty()
		keys++
		total += wait
		if enter {
			if burst < 5 || burst > 20 {
				t.Fatalf("a burst of %d keys", burst)
			}
			if wait < 500*time.Millisecond || wait >= 3*time.Second {
				t.Fatalf("a pause of %s", wait)
			}
			burst = 1
			continue
		}
		burst++
		if wait < 100*time.Millisecond || wait >= 200*time.Millisecond {
			t.Fatalf("%s between keys of a burst", wait)
		}
	}
	if rate := float64(keys) / total.Seconds(); rate < 3.4 || rate > 3.8 {
		t.Errorf("%.2f keys a second on average, want about 3.6", rate)
	}
}
