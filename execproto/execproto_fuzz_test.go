package execproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzFrames reads a stream as either end does: frames until the stream
// ends, each payload decoded by its type. Every frame must be within the
// limits and re-encode to exactly the bytes read, the stream must end
// with the right error, and a request, exit or answer that is accepted
// must be within its limits and read back the same after encoding.
func FuzzFrames(f *testing.F) {
	var seed []byte
	seed = AppendFrame(seed, FrameRequest, JSON(Request{Version: Version, Command: "echo hi", Env: []string{"LANG=C.UTF-8"}, TTY: &TTY{Term: "xterm", Rows: 24, Cols: 80}}))
	seed = AppendFrame(seed, FrameStdin, []byte("input\n"))
	seed = AppendFrame(seed, FrameResize, ResizePayload(50, 132))
	seed = AppendFrame(seed, FrameSignal, []byte("INT"))
	seed = AppendFrame(seed, FrameKeepalive, []byte("1"))
	seed = AppendFrame(seed, FrameCloseIn, nil)
	seed = AppendFrame(seed, 'z', []byte("a future frame type"))
	f.Add(seed)
	var answer []byte
	answer = AppendFrame(answer, FrameStarted, JSON(Started{Version: Version}))
	answer = AppendFrame(answer, FrameStdout, []byte("out"))
	answer = AppendFrame(answer, FrameStderr, []byte("err"))
	answer = AppendFrame(answer, FrameAck, AckPayload(6))
	answer = AppendFrame(answer, FrameExit, JSON(Exit{Signal: "KILL", SignalNumber: 9}))
	f.Add(answer)
	f.Add(AppendFrame(nil, FrameRequest, []byte(`{"version":1,"env":["=x","A"],"command":"a\u0000b"}`)))
	f.Add(AppendFrame(nil, FrameExit, []byte(`{"status":-1}`)))
	f.Add([]byte("R\xff\xff\xff\xff"))
	f.Add([]byte("R\x00\x00\x00\x10{\"version\""))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"))

	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream))
		var again []byte
		consumed := 0
		for {
			typ, p, err := r.Next()
			if err != nil {
				rest := len(stream) - consumed
				switch {
				case errors.Is(err, io.EOF):
					if rest != 0 {
						t.Fatalf("EOF with %d bytes after the last frame", rest)
					}
				case errors.Is(err, ErrFrameTooLong):
					if rest < headerLen {
						t.Fatalf("too long with only %d bytes left", rest)
					}
				case errors.Is(err, io.ErrUnexpectedEOF):
					if rest == 0 {
						t.Fatal("unexpected EOF at a frame boundary")
					}
				default:
					t.Fatalf("reading frames: %v", err)
				}
				break
			}
			if len(p) > MaxPayload {
				t.Fatalf("a payload of %d bytes", len(p))
			}
			consumed += headerLen + len(p)
			again = AppendFrame(again, typ, p)
			checkPayload(t, typ, p)
		}
		if !bytes.Equal(again, stream[:consumed]) {
			t.Fatalf("frames re-encode as %x, not %x", again, stream[:consumed])
		}
	})
}

// checkPayload decodes p as a frame of type typ, and checks what is
// accepted.
func checkPayload(t *testing.T, typ byte, p []byte) {
	t.Helper()
	switch typ {
	case FrameRequest:
		req, err := ParseRequest(p)
		if err != nil {
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted %+v: %v", req, err)
		}
		if len(req.Env) > MaxEnv {
			t.Fatalf("accepted %d variables", len(req.Env))
		}
		back, err := ParseRequest(JSON(req))
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("request %+v reads back as %+v, %v", req, back, err)
		}
	case FrameExit:
		e, err := ParseExit(p)
		if err != nil {
			return
		}
		if e.Status < 0 || e.Status > 255 || e.SignalNumber < 0 || e.SignalNumber > 127 {
			t.Fatalf("accepted %+v", e)
		}
		back, err := ParseExit(JSON(e))
		if err != nil || back != e {
			t.Fatalf("exit %+v reads back as %+v, %v", e, back, err)
		}
	case FrameStarted:
		s, err := ParseStarted(p)
		if err == nil && s.Version < 1 {
			t.Fatalf("accepted %+v", s)
		}
	case FrameResize:
		rows, cols, ok := ParseResize(p)
		if ok != (len(p) == 4) || (ok && !bytes.Equal(ResizePayload(rows, cols), p)) {
			t.Fatalf("resize %x: %d %d %v", p, rows, cols, ok)
		}
	case FrameAck:
		n, ok := ParseAck(p)
		if ok != (len(p) == 4) || (ok && !bytes.Equal(AckPayload(n), p)) {
			t.Fatalf("ack %x: %d %v", p, n, ok)
		}
	}
	// Any payload is a valid JSON string's worth of bytes for the
	// encoder: nothing here may panic.
	_, _ = json.Marshal(string(p))
}
