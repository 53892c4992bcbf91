package cli

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// readSizes is a source that records the size of each read asked of it.
type readSizes struct {
	r     io.Reader
	sizes []int
}

func (s *readSizes) Read(p []byte) (int, error) {
	s.sizes = append(s.sizes, len(p))
	return s.r.Read(p)
}

// failingWriter takes limit bytes, then fails.
type failingWriter struct{ limit int }

var errWriteFailed = errors.New("write failed")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errWriteFailed
	}
	w.limit -= len(p)
	return len(p), nil
}

// TestSessionOutput checks the copy that x/crypto/ssh makes of a session's
// output (io.Copy from the channel to Session.Stdout): through
// sessionOutput it asks the channel for stdioBufSize at a time, not
// io.Copy's 32 KiB, delivers every byte, and ends as io.Copy does.
func TestSessionOutput(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	t.Run("large reads, all delivered", func(t *testing.T) {
		src := &readSizes{r: bytes.NewReader(data)}
		var dst bytes.Buffer
		n, err := io.Copy(sessionOutput{&dst}, src)
		if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
			t.Fatalf("io.Copy = %d, %v; got %d bytes, want %d unchanged", n, err, dst.Len(), len(data))
		}
		for _, size := range src.sizes {
			if size != stdioBufSize {
				t.Fatalf("reads asked for %v bytes, want %d each", src.sizes, stdioBufSize)
			}
		}
	})
	t.Run("a failed write ends the copy", func(t *testing.T) {
		n, err := io.Copy(sessionOutput{&failingWriter{limit: 1000}}, bytes.NewReader(data))
		if !errors.Is(err, errWriteFailed) || n != 1000 {
			t.Fatalf("io.Copy = %d, %v; want 1000, %v", n, err, errWriteFailed)
		}
	})
}
