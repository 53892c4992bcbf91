package execproto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRequestValidate(t *testing.T) {
	tests := []struct {
		name    string
		req     Request
		wantErr string
	}{
		{"a command", Request{Version: Version, Command: "echo hi"}, ""},
		{"a login shell with a terminal", Request{Version: Version, TTY: &TTY{Term: "xterm", Rows: 24, Cols: 80}}, ""},
		{"variables", Request{Version: Version, Env: []string{"LANG=C.UTF-8", "EMPTY="}}, ""},
		{"another version", Request{Version: 2}, "version 2 is not supported"},
		{"no version", Request{}, "version 0 is not supported"},
		{"NUL in the command", Request{Version: Version, Command: "a\x00b"}, "NUL"},
		{"a variable without a value", Request{Version: Version, Env: []string{"LANG"}}, "not NAME=value"},
		{"a variable without a name", Request{Version: Version, Env: []string{"=x"}}, "not NAME=value"},
		{"NUL in a variable", Request{Version: Version, Env: []string{"A=b\x00"}}, "not NAME=value"},
		{"too many variables", Request{Version: Version, Env: make([]string, MaxEnv+1)}, "more than"},
		{"a terminal type with =", Request{Version: Version, TTY: &TTY{Term: "a=b"}}, "terminal type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestReaderLimits(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"empty", nil, io.EOF},
		{"a header cut short", []byte("o\x00\x00"), io.ErrUnexpectedEOF},
		{"a payload cut short", []byte("o\x00\x00\x00\x05abc"), io.ErrUnexpectedEOF},
		{"too long", []byte("o\x00\x04\x00\x01"), ErrFrameTooLong},
		{"the longest", AppendFrame(nil, FrameStdout, make([]byte, MaxPayload)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewReader(bytes.NewReader(tt.stream)).Next()
			if !errors.Is(err, tt.want) && err != tt.want {
				t.Fatalf("Next: %v, want %v", err, tt.want)
			}
		})
	}
	if err := WriteFrame(io.Discard, FrameStdout, make([]byte, MaxPayload+1)); err == nil {
		t.Error("WriteFrame wrote a payload over MaxPayload")
	}
}
