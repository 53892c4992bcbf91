package reconnectingpty

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

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

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	writeFrame(&buf, frameData, []byte("ls -l\n"))
	writeFrame(&buf, frameResize, resizePayload(40, 120))
	writeFrame(&buf, frameData, nil)
	if err := writeFrame(&buf, frameData, make([]byte, maxFramePayload+1)); err == nil {
		t.Error("oversized frame was written")
	}

	p := make([]byte, maxFramePayload)
	typ, payload, err := readFrame(&buf, p)
	if err != nil || typ != frameData || string(payload) != "ls -l\n" {
		t.Errorf("frame 1 = %c %q %v", typ, payload, err)
	}
	typ, payload, err = readFrame(&buf, p)
	h, w, ok := parseResize(payload)
	if err != nil || typ != frameResize || !ok || h != 40 || w != 120 {
		t.Errorf("frame 2 = %c %d %d %v", typ, h, w, err)
	}
	typ, payload, err = readFrame(&buf, p)
	if err != nil || typ != frameData || len(payload) != 0 {
		t.Errorf("frame 3 = %c %q %v", typ, payload, err)
	}
	if _, _, err := readFrame(&buf, p); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
	if _, _, err := readFrame(strings.NewReader("d\x00\x05ab"), p); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: %v, want unexpected EOF", err)
	}
}
