package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/tetherdev/tether/internal/join"
)

// Plain TCP through two forwarding processes: the round trip of a port
// forward with the tunnel taken out. A forwarded connection crosses the
// same processes (the application, the CLI, the agent, the service), and
// on a machine of two cores each crossing costs thread wake-ups that a
// round trip within one process does not pay; this baseline pays them.

// forwardProcArg, as the first argument, makes the bench binary a TCP
// forwarder to the address in the second argument.
const forwardProcArg = "internal-tcp-forward"

// forwardProcMain listens on loopback, prints its port, and forwards each
// connection to target (with the port forwards' own copying) until its
// stdin closes.
func forwardProcMain(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "bench: forwarder wants one target address")
		return 2
	}
	target := args[0]
	ln, err := listenLoopback()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: forwarder:", err)
		return 1
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	}()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		go func() {
			defer c.Close()
			out, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			join.Conns(c, out)
		}()
	}
}

// forwardProc is a running forwarder, seen from the parent.
type forwardProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startForwardProc(target string) (*forwardProc, error) {
	cmd, stdin, stdout, err := startChild(forwardProcArg, target)
	if err != nil {
		return nil, err
	}
	p := &forwardProc{cmd: cmd, stdin: stdin}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		p.close()
		return nil, fmt.Errorf("forwarder gave no port (%q): %v", line, err)
	}
	p.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return p, nil
}

// close ends the child: it exits when its stdin closes.
func (p *forwardProc) close() {
	p.stdin.Close()
	p.cmd.Wait()
}
