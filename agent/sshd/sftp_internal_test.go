package sshd

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// chanBuf stands for a channel: what the server writes, nothing to read.
type chanBuf struct{ bytes.Buffer }

func (*chanBuf) Read([]byte) (int, error) { return 0, io.EOF }
func (*chanBuf) Close() error             { return nil }

func packet(typ byte, body string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(body)))
	return append(append(b, typ), body...)
}

// TestSFTPLimitsWrites checks the write side: a reply written in pieces
// goes out whole, and a limits answer waits for the reply being written.
func TestSFTPLimitsWrites(t *testing.T) {
	ch := &chanBuf{}
	s := newSFTPLimits(ch)
	data := packet(103, "a reply's data")
	s.Write(data[:9])
	if ch.Len() != 0 {
		t.Fatalf("a reply's first piece went out alone: %q", ch.Bytes())
	}
	if err := s.reply(limitsReply(5)); err != nil {
		t.Fatal(err)
	}
	if ch.Len() != 0 {
		t.Fatalf("the limits answer went out in the middle of a reply: %q", ch.Bytes())
	}
	second := packet(101, "status")
	s.Write(append(data[9:], second[:3]...))
	if !bytes.Equal(ch.Bytes(), data) {
		t.Fatalf("channel has %q, want the whole reply %q", ch.Bytes(), data)
	}
	s.Write(second[3:])
	want := append(append(append([]byte(nil), data...), second...), limitsReply(5)...)
	if !bytes.Equal(ch.Bytes(), want) {
		t.Fatalf("channel has %q, want %q", ch.Bytes(), want)
	}
}
