package sshd

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Payloads of forwarding messages (RFC 4254 section 7).
type (
	// directTCPIPMsg opens a "direct-tcpip" channel (ssh -L) and, with the
	// bound address in place of the destination, a "forwarded-tcpip" one
	// (ssh -R).
	directTCPIPMsg struct {
		DestAddr   string
		DestPort   uint32
		OriginAddr string
		OriginPort uint32
	}
	tcpipForwardMsg struct {
		BindAddr string
		BindPort uint32
	}
	tcpipForwardReplyMsg struct {
		BindPort uint32
	}
)

// handleDirectTCPIP connects a local forward (ssh -L) to its destination,
// which may be anything the workspace can reach.
func (c *conn) handleDirectTCPIP(nc ssh.NewChannel) {
	var m directTCPIPMsg
	if err := ssh.Unmarshal(nc.ExtraData(), &m); err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	addr := net.JoinHostPort(m.DestAddr, strconv.Itoa(int(m.DestPort)))
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	tc, err := c.server.dial(ctx, "tcp", addr)
	cancel()
	if err != nil {
		c.logger.Debug("direct-tcpip dial", "addr", addr, "err", err)
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		tc.Close()
		return
	}
	c.proxy(ch, reqs, tc)
}

// startReverseForward listens for a reverse forward (ssh -R) and replies
// with the bound port.
func (c *conn) startReverseForward(payload []byte) (bool, []byte) {
	var m tcpipForwardMsg
	if err := ssh.Unmarshal(payload, &m); err != nil || m.BindPort > 0xffff {
		return false, nil
	}
	// As OpenSSH does without GatewayPorts: "" and "localhost" mean the
	// loopback interface; only an explicit address opens the port wider.
	host := m.BindAddr
	switch host {
	case "", "localhost":
		host = "127.0.0.1"
	case "*":
		host = ""
	}
	key := net.JoinHostPort(m.BindAddr, strconv.Itoa(int(m.BindPort)))
	l, err := c.server.listen(c.ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(m.BindPort))))
	if err != nil {
		c.logger.Debug("tcpip-forward listen", "addr", key, "err", err)
		return false, nil
	}
	port := uint32(m.BindPort)
	if ta, ok := l.Addr().(*net.TCPAddr); ok {
		port = uint32(ta.Port)
	}
	if m.BindPort == 0 {
		// The client cancels with the port it was given.
		key = net.JoinHostPort(m.BindAddr, strconv.Itoa(int(port)))
	}

	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		l.Close()
		return false, nil
	}
	if old, ok := c.forwards[key]; ok {
		old.Close()
	}
	if c.forwards == nil {
		c.forwards = make(map[string]net.Listener)
	}
	c.forwards[key] = l
	c.mu.Unlock()

	c.server.group.Go(func() {
		for {
			tc, err := l.Accept()
			if err != nil {
				return
			}
			c.server.group.Go(func() { c.openForwarded(m.BindAddr, port, tc) })
		}
	})
	return true, ssh.Marshal(&tcpipForwardReplyMsg{BindPort: port})
}

// openForwarded hands a connection accepted for a reverse forward to the
// client.
func (c *conn) openForwarded(bindAddr string, bindPort uint32, tc net.Conn) {
	oh, op := splitAddr(tc.RemoteAddr())
	oport, _ := strconv.Atoi(op)
	ch, reqs, err := c.sconn.OpenChannel("forwarded-tcpip", ssh.Marshal(&directTCPIPMsg{
		DestAddr:   bindAddr,
		DestPort:   bindPort,
		OriginAddr: oh,
		OriginPort: uint32(oport),
	}))
	if err != nil {
		tc.Close()
		return
	}
	c.proxy(ch, reqs, tc)
}

func (c *conn) cancelReverseForward(payload []byte) bool {
	var m tcpipForwardMsg
	if err := ssh.Unmarshal(payload, &m); err != nil {
		return false
	}
	key := net.JoinHostPort(m.BindAddr, strconv.Itoa(int(m.BindPort)))
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.forwards[key]
	if ok {
		l.Close()
		delete(c.forwards, key)
	}
	return ok
}

// agentSocket returns the path of the connection's agent socket, creating
// it on first use: a Unix socket in a private temporary directory whose
// every connection becomes an "auth-agent@openssh.com" channel to the
// client's agent. One socket serves all of the connection's sessions, as
// with OpenSSH.
func (c *conn) agentSocket() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return "", net.ErrClosed
	}
	if c.agentL != nil {
		return c.agentL.Addr().String(), nil
	}
	// MkdirTemp makes the directory 0700: only this user reaches the agent.
	dir, err := os.MkdirTemp("", "tether-ssh-agent-")
	if err != nil {
		return "", fmt.Errorf("agent socket dir: %w", err)
	}
	path := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("agent socket: %w", err)
	}
	c.agentDir, c.agentL = dir, l
	c.server.group.Go(func() {
		for {
			uc, err := l.Accept()
			if err != nil {
				return
			}
			c.server.group.Go(func() {
				ch, reqs, err := c.sconn.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					uc.Close()
					return
				}
				c.proxy(ch, reqs, uc)
			})
		}
	})
	return path, nil
}

// proxy copies between an SSH channel and a connection in both directions,
// passing each side's EOF on as a half-close, until both directions are
// done, the client closes the channel, or the SSH connection ends. It
// closes both.
func (c *conn) proxy(ch ssh.Channel, reqs <-chan *ssh.Request, nc net.Conn) {
	stop := context.AfterFunc(c.ctx, func() {
		ch.Close()
		nc.Close()
	})
	defer stop()

	inDone := make(chan struct{})
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		ssh.DiscardRequests(reqs)
		// reqs ends when the channel is closed. A client that closes it
		// wants no more data, and a peer that holds its side open must not
		// keep the copy to the channel waiting; but what the client sent
		// before closing is still buffered in ch and goes through first.
		<-inDone
		nc.Close()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(inDone)
		io.Copy(nc, ch)
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			nc.Close()
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(ch, nc)
		ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	nc.Close()
	<-reqsDone
}
