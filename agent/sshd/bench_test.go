package sshd_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/tetherdev/tether/agent/sshd"
	"golang.org/x/crypto/ssh"
)

// The SSH layer alone, without the tunnel: x/crypto/ssh's client against
// this server over loopback TCP, moving a program's output (`head -c`,
// which writes 8 KiB at a time) down to io.Discard. Compare with
// BenchmarkLoopbackTCP, the same bytes through the same kind of socket
// without SSH, and with bench's sshbulk rows, which put the tunnel and
// the processes around it.
//
//	go test -run '^$' -bench 'Bulk|Loopback' -benchtime 10x ./agent/sshd

// benchBytes is what one iteration moves.
const benchBytes = 64 << 20

func BenchmarkBulkDown(b *testing.B) {
	srv, err := sshd.New(sshd.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, sshd.ErrServerClosed) {
			b.Errorf("Serve: %v", err)
		}
	}()
	c, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{
		User:            "anyone",
		HostKeyCallback: ssh.FixedHostKey(srv.PublicKey()),
		Timeout:         testTimeout,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		s.Stdout = io.Discard
		if err := s.Run(fmt.Sprintf("head -c %d /dev/zero", benchBytes)); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

func BenchmarkLoopbackTCP(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 8<<10)
			for n := 0; n < benchBytes; n += len(buf) {
				if _, err := c.Write(buf); err != nil {
					break
				}
			}
			c.Close()
		}
	}()
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, c); err != nil || n != benchBytes {
			b.Fatalf("copied %d, %v", n, err)
		}
		c.Close()
	}
}
