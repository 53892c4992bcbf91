package ptyproto

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzProtocol reads what a client sends, as the server does: the header
// line, then frames until the stream ends. A header that is accepted must
// name a session within the limits and read back the same after the client
// side (Attach) encodes it; the frames must account for every byte read,
// re-encode to exactly those bytes, and the terminal input they carry must
// arrive whole when the client side (Conn.Write) sends it again.
func FuzzProtocol(f *testing.F) {
	var seed bytes.Buffer
	seed.WriteString(`{"id":"3f2a/terminal-1","height":24,"width":80}` + "\n")
	WriteFrame(&seed, FrameData, []byte("ls -la\r"))
	WriteFrame(&seed, FrameResize, ResizePayload(50, 132))
	WriteFrame(&seed, 'x', []byte("a future frame type"))
	WriteFrame(&seed, FrameData, nil)
	f.Add(seed.Bytes())
	f.Add([]byte(`{"id":"a","command":"echo hi"}` + "\n" + "d\x00\x02hi" + "r\x00\x03abc"))
	f.Add([]byte(`{"id":""}` + "\n"))
	f.Add([]byte(`{"id":"\u0000\ud800","height":65535,"width":0}` + "\n" + "d\xff\xffshort"))
	f.Add([]byte(`{"id":"a"}`)) // no newline
	f.Add([]byte("\n"))

	f.Fuzz(func(t *testing.T, stream []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(stream), MaxHeaderLen)
		h, err := ReadHeader(br)
		if err != nil {
			return
		}
		if h.ID == "" || len(h.ID) > MaxIDLen {
			t.Fatalf("accepted header has id of %d bytes", len(h.ID))
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("ReadHeader accepted %+v: %v", h, err)
		}
		checkHeaderRoundTrip(t, h)

		headerEnd := len(stream) - br.Buffered()
		if i := bytes.IndexByte(stream, '\n'); i+1 != headerEnd {
			t.Fatalf("header line ends at %d, reader is at %d", i+1, headerEnd)
		}
		consumed := headerEnd
		var (
			again bytes.Buffer
			input []byte
		)
		buf := make([]byte, MaxFramePayload)
		for {
			typ, payload, err := ReadFrame(br, buf)
			if err != nil {
				atBoundary := len(stream)-consumed == 0
				if errors.Is(err, io.EOF) != atBoundary || (!atBoundary && !errors.Is(err, io.ErrUnexpectedEOF)) {
					t.Fatalf("stream ended with %v, %d bytes after the last whole frame", err, len(stream)-consumed)
				}
				break
			}
			if len(payload) > MaxFramePayload {
				t.Fatalf("frame payload of %d bytes", len(payload))
			}
			consumed += 3 + len(payload)
			if err := WriteFrame(&again, typ, payload); err != nil {
				t.Fatal(err)
			}
			switch typ {
			case FrameData:
				input = append(input, payload...)
			case FrameResize:
				hgt, wid, ok := ParseResize(payload)
				if ok != (len(payload) == 4) {
					t.Fatalf("resize payload of %d bytes: ok %v", len(payload), ok)
				}
				if ok && !bytes.Equal(ResizePayload(hgt, wid), payload) {
					t.Fatalf("resize %dx%d re-encodes as %x, not %x", hgt, wid, ResizePayload(hgt, wid), payload)
				}
			}
		}
		if frames := stream[headerEnd:consumed]; !bytes.Equal(again.Bytes(), frames) {
			t.Fatalf("frames re-encode as %x, not %x", again.Bytes(), frames)
		}
		checkInputRoundTrip(t, input)
	})
}

// checkHeaderRoundTrip sends h as Attach does and reads it as the server.
func checkHeaderRoundTrip(t *testing.T, h Header) {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Attach(ctx, client, h)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	got, err := ReadHeader(bufio.NewReaderSize(server, MaxHeaderLen))
	server.Close() // unblocks Attach if the server stopped reading
	if aerr := <-done; aerr != nil {
		if len(mustJSON(t, h)) >= MaxHeaderLen {
			return // a header too long to send; Attach fails, as it must
		}
		t.Fatalf("Attach(%+v): %v", h, aerr)
	}
	if err != nil {
		if len(mustJSON(t, h)) >= MaxHeaderLen {
			return
		}
		t.Fatalf("header %+v, as Attach sends it, is refused: %v", h, err)
	}
	if got != h {
		t.Fatalf("header round trip: sent %+v, read %+v", h, got)
	}
}

// checkInputRoundTrip types input through Conn.Write and reads it back as
// the server does.
func checkInputRoundTrip(t *testing.T, input []byte) {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	c := &Conn{conn: client}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(input)
		c.Close()
		done <- err
	}()
	var got []byte
	buf := make([]byte, MaxFramePayload)
	br := bufio.NewReader(server)
	for {
		typ, payload, err := ReadFrame(br, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reading Conn.Write's frames: %v", err)
			}
			break
		}
		if typ != FrameData {
			t.Fatalf("Conn.Write sent a frame of type %q", typ)
		}
		got = append(got, payload...)
	}
	if err := <-done; err != nil {
		t.Fatalf("Conn.Write: %v", err)
	}
	if !bytes.Equal(got, input) {
		t.Fatalf("input %q arrived as %q", input, got)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
