package sshd_test

import (
	"io"
	"net"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// proxyEnv, when set to an address, makes the test binary a ProxyCommand
// for OpenSSH (see openssh_test.go): it connects stdin and stdout to the
// address, as `tether ssh --stdio` connects them to the tunnel.
const proxyEnv = "SSHD_TEST_PROXY_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(proxyEnv); addr != "" {
		os.Exit(proxyMain(addr))
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
