package sshd_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetherdev/tether/agent/sshd"
)

// sftpConn speaks raw SFTP on a session's stdin and stdout.
type sftpConn struct {
	t   *testing.T
	in  io.Writer
	out io.Reader
}

// send writes one packet of type typ with the given fields: uint32,
// uint64, string or []byte (as an SFTP string).
func (c sftpConn) send(typ byte, fields ...any) {
	c.t.Helper()
	var body []byte
	body = append(body, typ)
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		case []byte:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		}
	}
	if _, err := c.in.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads one packet and returns its type and what follows it.
func (c sftpConn) recv() (byte, []byte) {
	c.t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(c.out, hdr[:]); err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c.out, body); err != nil {
		c.t.Fatal(err)
	}
	return body[0], body[1:]
}

// sftpString splits an SFTP string off b.
func sftpString(b []byte) (string, []byte) {
	n := binary.BigEndian.Uint32(b)
	return string(b[4 : 4+n]), b[4+n:]
}

// TestSFTPLimits checks what OpenSSH's sftp and scp need for large reads
// and writes: the limits@openssh.com extension, announced and answered,
// and reads of as much as the limits state (pkg/sftp alone gives 32 KiB).
func TestSFTPLimits(t *testing.T) {
	ts := startServer(t, sshd.Options{})
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	sc := sftpConn{t: t, in: in, out: out}

	sc.send(1, uint32(3)) // SSH_FXP_INIT, version 3
	typ, b := sc.recv()
	if typ != 2 || len(b) < 4 {
		t.Fatalf("reply to INIT: type %d, want VERSION", typ)
	}
	exts := map[string]string{}
	for b = b[4:]; len(b) > 0; {
		var name, data string
		name, b = sftpString(b)
		data, b = sftpString(b)
		exts[name] = data
	}
	if exts["limits@openssh.com"] != "1" {
		t.Fatalf("VERSION announces %v, want limits@openssh.com 1 among them", exts)
	}

	sc.send(200, uint32(7), "limits@openssh.com") // SSH_FXP_EXTENDED
	typ, b = sc.recv()
	if typ != 201 || len(b) != 4+4*8 || binary.BigEndian.Uint32(b) != 7 {
		t.Fatalf("reply to limits: type %d, %d bytes; want EXTENDED_REPLY to request 7 with 4 numbers", typ, len(b))
	}
	maxPacket, readLen, writeLen := binary.BigEndian.Uint64(b[4:]), binary.BigEndian.Uint64(b[12:]), binary.BigEndian.Uint64(b[20:])
	if readLen <= 32<<10 || writeLen <= 32<<10 || readLen+1024 > maxPacket || writeLen+1024 > maxPacket {
		t.Fatalf("limits: packet %d, read %d, write %d; want reads and writes over 32 KiB that fit in a packet", maxPacket, readLen, writeLen)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), int(2*readLen/16))
	path := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sc.send(3, uint32(8), path, uint32(1), uint32(0)) // SSH_FXP_OPEN for reading, no attributes
	typ, b = sc.recv()
	if typ != 102 {
		t.Fatalf("reply to OPEN: type %d, want HANDLE", typ)
	}
	handle, _ := sftpString(b[4:])
	sc.send(5, uint32(9), handle, uint64(0), uint32(readLen)) // SSH_FXP_READ
	typ, b = sc.recv()
	if typ != 103 {
		t.Fatalf("reply to READ: type %d, want DATA", typ)
	}
	got, _ := sftpString(b[4:])
	if uint64(len(got)) != readLen || got != string(data[:readLen]) {
		t.Fatalf("READ of %d bytes returned %d", readLen, len(got))
	}
	// Other extended requests still reach the server.
	sc.send(200, uint32(10), "statvfs@openssh.com", "/")
	if typ, b = sc.recv(); typ != 201 || binary.BigEndian.Uint32(b) != 10 {
		t.Fatalf("reply to statvfs: type %d, want EXTENDED_REPLY to request 10", typ)
	}
	in.Close()
}
