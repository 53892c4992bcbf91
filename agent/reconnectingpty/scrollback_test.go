package reconnectingpty

import "testing"

func TestScrollback(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes []string
		want   string
	}{
		{name: "fits", size: 10, writes: []string{"abc", "def"}, want: "abcdef"},
		{name: "drops oldest", size: 4, writes: []string{"abc", "def"}, want: "cdef"},
		{name: "one big write", size: 4, writes: []string{"abcdefgh"}, want: "efgh"},
		// "✓" is 3 bytes: keeping 5 bytes of "a✓✓" cuts the first ✓ after
		// its first byte; the replay starts at the next character.
		{name: "cut inside a character", size: 5, writes: []string{"a✓", "✓"}, want: "✓"},
		{name: "cut at a character", size: 6, writes: []string{"a✓✓"}, want: "✓✓"},
		{name: "untruncated start is kept", size: 10, writes: []string{"\x80abc"}, want: "\x80abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := scrollback{size: tt.size}
			for _, w := range tt.writes {
				b.write([]byte(w))
			}
			if got := string(b.replay()); got != tt.want {
				t.Errorf("replay = %q, want %q", got, tt.want)
			}
			if len(b.buf) > tt.size {
				t.Errorf("kept %d bytes, more than %d", len(b.buf), tt.size)
			}
		})
	}
}
