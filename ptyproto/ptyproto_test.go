package ptyproto_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/ptyproto"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 30 * time.Second

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	ptyproto.WriteFrame(&buf, ptyproto.FrameData, []byte("ls -l\n"))
	ptyproto.WriteFrame(&buf, ptyproto.FrameResize, ptyproto.ResizePayload(40, 120))
	ptyproto.WriteFrame(&buf, ptyproto.FrameData, nil)
	if err := ptyproto.WriteFrame(&buf, ptyproto.FrameData, make([]byte, ptyproto.MaxFramePayload+1)); err == nil {
		t.Error("oversized frame was written")
	}

	p := make([]byte, ptyproto.MaxFramePayload)
	typ, payload, err := ptyproto.ReadFrame(&buf, p)
	if err != nil || typ != ptyproto.FrameData || string(payload) != "ls -l\n" {
		t.Errorf("frame 1 = %c %q %v", typ, payload, err)
	}
	typ, payload, err = ptyproto.ReadFrame(&buf, p)
	h, w, ok := ptyproto.ParseResize(payload)
	if err != nil || typ != ptyproto.FrameResize || !ok || h != 40 || w != 120 {
		t.Errorf("frame 2 = %c %d %d %v", typ, h, w, err)
	}
	typ, payload, err = ptyproto.ReadFrame(&buf, p)
	if err != nil || typ != ptyproto.FrameData || len(payload) != 0 {
		t.Errorf("frame 3 = %c %q %v", typ, payload, err)
	}
	if _, _, err := ptyproto.ReadFrame(&buf, p); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
	if _, _, err := ptyproto.ReadFrame(strings.NewReader("d\x00\x05ab"), p); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated frame: %v, want unexpected EOF", err)
	}
	if _, _, ok := ptyproto.ParseResize([]byte{0, 1, 2}); ok {
		t.Error("a 3-byte resize parsed")
	}
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ptyproto.Header
		wantErr string
		rest    string // what stays in the reader after the header
	}{
		{name: "attach", in: `{"id":"a","height":24,"width":80}` + "\nd\x00\x01x",
			want: ptyproto.Header{ID: "a", Height: 24, Width: 80}, rest: "d\x00\x01x"},
		{name: "command", in: `{"id":"b","command":"top"}` + "\n",
			want: ptyproto.Header{ID: "b", Command: "top"}},
		{name: "longest id", in: `{"id":"` + strings.Repeat("i", ptyproto.MaxIDLen) + `"}` + "\n",
			want: ptyproto.Header{ID: strings.Repeat("i", ptyproto.MaxIDLen)}},
		{name: "not json", in: "hello\n", wantErr: "parse header"},
		{name: "no id", in: `{"height": 24}` + "\n", wantErr: "session id is empty"},
		{name: "id too long", in: `{"id":"` + strings.Repeat("i", ptyproto.MaxIDLen+1) + `"}` + "\n", wantErr: "session id is longer"},
		{name: "header too long", in: strings.Repeat("x", ptyproto.MaxHeaderLen+1) + "\n", wantErr: "header is longer"},
		{name: "no newline", in: `{"id":"a"}`, wantErr: "read header"},
		{name: "size out of range", in: `{"id":"a","height":70000}` + "\n", wantErr: "parse header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), ptyproto.MaxHeaderLen)
			h, err := ptyproto.ReadHeader(br)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadHeader = %+v, %v; want an error mentioning %q", h, err, tt.wantErr)
				}
				return
			}
			if err != nil || h != tt.want {
				t.Fatalf("ReadHeader = %+v, %v; want %+v", h, err, tt.want)
			}
			if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
				t.Errorf("left %q in the reader, want %q", rest, tt.rest)
			}
		})
	}
}

// TestHeaderLimitWithLargerBuffer checks that the limit holds whatever
// buffer the server reads with.
func TestHeaderLimitWithLargerBuffer(t *testing.T) {
	in := `{"id":"` + strings.Repeat("i", ptyproto.MaxHeaderLen) + `"}` + "\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 4*ptyproto.MaxHeaderLen)
	if _, err := ptyproto.ReadHeader(br); err == nil || !strings.Contains(err.Error(), "header is longer") {
		t.Errorf("ReadHeader of %d bytes: %v, want it refused as too long", len(in), err)
	}
}

// TestAttach checks the client side against a server that reads the raw
// protocol: the header line, then input split into frames and resizes.
func TestAttach(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()

	type frame struct {
		typ     byte
		payload []byte
	}
	got := make(chan ptyproto.Header, 1)
	frames := make(chan frame, 16)
	go func() {
		defer close(frames)
		br := bufio.NewReaderSize(server, ptyproto.MaxHeaderLen)
		h, err := ptyproto.ReadHeader(br)
		if err != nil {
			close(got)
			return
		}
		got <- h
		buf := make([]byte, ptyproto.MaxFramePayload)
		for {
			typ, p, err := ptyproto.ReadFrame(br, buf)
			if err != nil {
				return
			}
			frames <- frame{typ, append([]byte(nil), p...)}
		}
	}()

	want := ptyproto.Header{ID: "u/s", Height: 30, Width: 100}
	c, err := ptyproto.Attach(ctx, client, want)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if h := <-got; h != want {
		t.Fatalf("server read header %+v, want %+v", h, want)
	}

	big := bytes.Repeat([]byte("x"), ptyproto.MaxFramePayload+10)
	c.SetDeadline(time.Now().Add(testTimeout))
	if n, err := c.Write(big); err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if err := c.Resize(50, 132); err != nil {
		t.Fatal(err)
	}
	c.Close()

	var data []byte
	var sizes [][2]uint16
	for f := range frames {
		switch f.typ {
		case ptyproto.FrameData:
			data = append(data, f.payload...)
		case ptyproto.FrameResize:
			h, w, ok := ptyproto.ParseResize(f.payload)
			if !ok {
				t.Fatalf("malformed resize %x", f.payload)
			}
			sizes = append(sizes, [2]uint16{h, w})
		default:
			t.Fatalf("frame of type %q", f.typ)
		}
	}
	if !bytes.Equal(data, big) {
		t.Errorf("server got %d bytes of input, want %d", len(data), len(big))
	}
	if len(sizes) != 1 || sizes[0] != [2]uint16{50, 132} {
		t.Errorf("resizes %v, want [[50 132]]", sizes)
	}
}

func TestAttachRefuses(t *testing.T) {
	t.Run("invalid header", func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		_, err := ptyproto.Attach(t.Context(), client, ptyproto.Header{})
		if err == nil || !strings.Contains(err.Error(), "session id is empty") {
			t.Fatalf("Attach with no id: %v", err)
		}
		// The connection was closed: the server side sees EOF.
		server.SetDeadline(time.Now().Add(testTimeout))
		if _, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("server read %v, want EOF", err)
		}
	})
	t.Run("header too long", func(t *testing.T) {
		client, server := net.Pipe()
		defer server.Close()
		h := ptyproto.Header{ID: "x", Command: strings.Repeat("c", ptyproto.MaxHeaderLen)}
		_, err := ptyproto.Attach(t.Context(), client, h)
		if err == nil || !strings.Contains(err.Error(), "header is longer") {
			t.Fatalf("Attach with a long command: %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		// Nobody reads the pipe: the write blocks until ctx ends.
		client, server := net.Pipe()
		defer server.Close()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := ptyproto.Attach(ctx, client, ptyproto.Header{ID: "x"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Attach with a canceled context: %v, want context.Canceled", err)
		}
	})
}

// TestAttachAt: the answer line says where the output starts and the
// output follows it unchanged; a server that closes without an answer (an
// agent older than positions, whose port goes to the workspace) is
// ErrNoAnswer, which the server's relay takes as "use the old port".
func TestAttachAt(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer string
		want   ptyproto.Attached
		output string
		err    error
	}{
		{"answered", `{"instance":"i1","offset":42,"replay":false}` + "\n", ptyproto.Attached{Position: ptyproto.Position{Instance: "i1", Offset: 42}}, "more output", nil},
		{"replay", `{"instance":"i2","offset":7,"replay":true}` + "\n", ptyproto.Attached{Position: ptyproto.Position{Instance: "i2", Offset: 7}, Replay: true}, "", nil},
		{"no answer", "", ptyproto.Attached{}, "", ptyproto.ErrNoAnswer},
	} {
		t.Run(c.name, func(t *testing.T) {
			client, server := net.Pipe()
			go func() {
				br := bufio.NewReaderSize(server, ptyproto.MaxHeaderLen)
				if _, err := ptyproto.ReadHeader(br); err != nil {
					server.Close()
					return
				}
				io.WriteString(server, c.answer+c.output)
				server.Close()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			conn, a, err := ptyproto.AttachAt(ctx, client, ptyproto.Header{ID: "s", Resume: &ptyproto.Position{Instance: "i1", Offset: 42}})
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("AttachAt: %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if a != c.want {
				t.Errorf("answer %+v, want %+v", a, c.want)
			}
			out, _ := io.ReadAll(conn)
			if string(out) != c.output {
				t.Errorf("output %q, want %q", out, c.output)
			}
		})
	}
}
