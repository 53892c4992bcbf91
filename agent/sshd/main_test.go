package sshd_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// proxyEnv, when set to an address, makes the test binary a ProxyCommand
// for OpenSSH (see openssh_test.go): it connects stdin and stdout to the
// address, as `tether ssh --stdio` connects them to the tunnel.
const proxyEnv = "SSHD_TEST_PROXY_ADDR"

// fillEnv, when set to a path, makes the test binary fill its standard
// output until nothing more fits, write the number of bytes it wrote to
// the path, and exit (see TestStalledClientGetsAllOutput).
const fillEnv = "SSHD_TEST_FILL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(proxyEnv); addr != "" {
		os.Exit(proxyMain(addr))
	}
	if path := os.Getenv(fillEnv); path != "" {
		os.Exit(fillMain(path))
	}
	goleak.VerifyTestMain(m)
}

func proxyMain(addr string) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		os.Stderr.WriteString("proxy: " + err.Error() + "\n")
		return 1
	}
	defer c.Close()
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
	return 0
}

func fillMain(path string) int {
	if err := syscall.SetNonblock(1, true); err != nil {
		return 1
	}
	buf := make([]byte, 4096)
	n, progress := 0, time.Now()
	// Half a second without room for a byte: everything between here and
	// the client is full.
	for time.Since(progress) < 500*time.Millisecond {
		m, err := syscall.Write(1, buf)
		if m > 0 {
			n += m
			progress = time.Now()
		}
		if errors.Is(err, syscall.EAGAIN) {
			time.Sleep(time.Millisecond)
		} else if err != nil {
			return 1
		}
	}
	if err := os.WriteFile(path+".tmp", []byte(strconv.Itoa(n)), 0o644); err != nil {
		return 1
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return 1
	}
	return 0
}
