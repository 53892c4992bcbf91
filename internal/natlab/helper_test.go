//go:build linux

package natlab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// helperEnv selects the helper program the test binary runs as. The other
// NATLAB_* variables are its arguments.
const helperEnv = "NATLAB_HELPER"

// helperLifetime bounds every helper, so that one whose test died without
// killing it does not outlive the run for long.
const helperLifetime = time.Minute

func runHelper(mode string) int {
	go func() {
		time.Sleep(helperLifetime)
		fmt.Fprintln(os.Stderr, "helper lifetime exceeded")
		os.Exit(3)
	}()
	var err error
	switch mode {
	case "punch":
		err = punchHelper()
	case "tcpecho":
		err = tcpEchoHelper()
	case "sleep":
		fmt.Println("ready")
		select {}
	default:
		err = fmt.Errorf("unknown helper %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// punchHelper is one side of a hole-punching exchange, the way Tailscale's
// disco does it in miniature. It learns its mapped address from the
// reflector at NATLAB_REFLECTOR and prints "mapped <addr:port>"; reads
// "peer <addr:port>" (the other side's mapped address) from stdin; then
// pings the peer, and every address a ping came from, from the same socket
// until stdin closes. It answers pings with pongs, and prints
// "ok <addr:port>" at the first pong, which proves packets got through
// both ways.
func punchHelper() error {
	refl, err := netip.ParseAddrPort(os.Getenv("NATLAB_REFLECTOR"))
	if err != nil {
		return fmt.Errorf("reflector: %w", err)
	}
	port, err := strconv.Atoi(os.Getenv("NATLAB_PORT"))
	if err != nil {
		return fmt.Errorf("port: %w", err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return err
	}
	defer conn.Close()

	buf := make([]byte, 1500)
	var mapped string
	for mapped == "" {
		if _, err := conn.WriteToUDPAddrPort([]byte("who"), refl); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err == nil && src == refl {
			mapped, _, _ = strings.Cut(string(buf[:n]), "|")
		}
	}
	fmt.Println("mapped", mapped)

	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return nil
	}
	peer, err := netip.ParseAddrPort(strings.TrimPrefix(in.Text(), "peer "))
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	stdinClosed := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(stdinClosed)
	}()

	targets := map[netip.AddrPort]bool{peer: true}
	var lastPing time.Time
	ok := false
	for {
		select {
		case <-stdinClosed:
			return nil
		default:
		}
		if time.Since(lastPing) >= 20*time.Millisecond {
			for t := range targets {
				conn.WriteToUDPAddrPort([]byte("ping"), t)
			}
			lastPing = time.Now()
		}
		conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		switch string(buf[:n]) {
		case "ping":
			conn.WriteToUDPAddrPort([]byte("pong"), src)
			targets[src] = true
		case "pong":
			if !ok {
				ok = true
				fmt.Println("ok", src)
			}
		}
	}
}

// tcpEchoHelper echoes TCP connections on NATLAB_ADDR until stdin closes.
func tcpEchoHelper() error {
	ln, err := net.Listen("tcp4", os.Getenv("NATLAB_ADDR"))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	fmt.Println("listening")
	io.Copy(io.Discard, os.Stdin)
	return ln.Close()
}

// helper is a helper program running inside a host's namespace.
type helper struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

// startHelper starts the test binary as helper mode inside h, and stops it
// (by closing its stdin, and through ctx) when the test ends.
func startHelper(ctx context.Context, t testing.TB, h *Host, mode string, env ...string) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(ctx, exe)
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper %s on %s: %v", mode, h.Name(), err)
	}
	hp := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			hp.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		<-readDone
		cmd.Wait() // killed by ctx or the lab's cleanup at worst
		if s := stderr.String(); s != "" {
			t.Logf("helper %s on %s: stderr: %s", mode, h.Name(), s)
		}
	})
	return hp
}

// expect waits for the next line, which must be the word prefix,
// optionally followed by a space and more, and returns the more.
func (hp *helper) expect(ctx context.Context, prefix string) (string, error) {
	select {
	case line, ok := <-hp.lines:
		if !ok {
			return "", fmt.Errorf("helper exited while waiting for %q", prefix)
		}
		word, rest, _ := strings.Cut(line, " ")
		if word != prefix {
			return "", fmt.Errorf("helper said %q, want %q", line, prefix)
		}
		return rest, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for %q: %w", prefix, ctx.Err())
	}
}

func (hp *helper) send(line string) {
	hp.t.Helper()
	if _, err := io.WriteString(hp.stdin, line+"\n"); err != nil {
		hp.t.Fatalf("write to helper: %v", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
