// Package servegroup is what a server keeps in order to stop: the
// listeners it accepts on, the connections it serves and the goroutines
// it starts for them. Close closes every listener and connection, so that
// blocked reads and accepts return; Wait then waits for the goroutines.
//
// The agent's servers (agent/sshd, agent/execd, agent/reconnectingpty,
// agent/rtcterm) share it so that each stops in the same way: once a group
// is closed it accepts nothing more, and a connection accepted as it
// closes is closed at once instead of being served.
package servegroup

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrClosed is returned by Serve once the group is closed, unless the
// group names its own error (Group.ClosedErr).
var ErrClosed = errors.New("servegroup: closed")

// Group tracks a server's listeners, connections and goroutines. The zero
// value is an open, empty group. Its methods are safe for concurrent use.
type Group struct {
	// ClosedErr is what Serve returns once the group is closed: a server's
	// own ErrServerClosed, say. Nil means ErrClosed. Set it before use.
	ClosedErr error

	// wg counts the goroutines of Serve's connections, of ServeConn's
	// callers and of Go. Add is called under mu while the group is open,
	// or by a goroutine wg already counts, so a Wait after Close sees
	// every goroutine.
	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool                      // guarded by mu; set by StopAccepting and Close
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[net.Conn]struct{}     // guarded by mu
}

// Serve accepts connections on l and runs handle on a goroutine of its
// own for each, until the group is closed or l fails. A connection is
// closed when its handle returns, or by Close. Serve closes l before it
// returns: ClosedErr (or ErrClosed) once the group is closed, else the accept
// error.
func (g *Group) Serve(l net.Listener, handle func(net.Conn)) error {
	if !g.addListener(l) {
		l.Close()
		return g.closedErr()
	}
	defer func() {
		g.mu.Lock()
		delete(g.listeners, l)
		g.mu.Unlock()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if g.Closed() {
				return g.closedErr()
			}
			return fmt.Errorf("accept: %w", err)
		}
		if !g.addConn(c) {
			c.Close()
			return g.closedErr()
		}
		go g.run(c, handle)
	}
}

// ServeConn runs handle on c on the calling goroutine, as Serve would run
// it for a connection it accepted, and closes c when handle returns. Once
// the group is closed it closes c and returns false without calling
// handle.
func (g *Group) ServeConn(c net.Conn, handle func(net.Conn)) bool {
	if !g.addConn(c) {
		c.Close()
		return false
	}
	g.run(c, handle)
	return true
}

// Go runs f on a goroutine that Wait waits for. Call it only from a
// goroutine the group already counts (a connection's handle, or a function
// Go runs), so that it cannot start after Wait has returned.
func (g *Group) Go(f func()) { g.wg.Go(f) }

// Closed reports whether the group is closed: StopAccepting or Close was
// called.
func (g *Group) Closed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// StopAccepting closes the group to new listeners and connections and
// closes its listeners. The connections it serves go on: a graceful
// shutdown waits for them (Wait) before it calls Close.
func (g *Group) StopAccepting() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopAcceptingLocked()
}

func (g *Group) stopAcceptingLocked() {
	g.closed = true
	for l := range g.listeners {
		l.Close()
	}
}

// Close closes the group, its listeners and its connections. It does not
// wait for their goroutines to end: call Wait.
func (g *Group) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopAcceptingLocked()
	for c := range g.conns {
		c.Close()
	}
}

// Wait waits until every connection's handle and every function given to
// Go has returned. After Close, that is the end of the server's work.
func (g *Group) Wait() { g.wg.Wait() }

// addListener registers l, unless the group is closed.
func (g *Group) addListener(l net.Listener) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.listeners == nil {
		g.listeners = make(map[net.Listener]struct{})
	}
	g.listeners[l] = struct{}{}
	return true
}

// addConn registers c and counts the goroutine that will serve it, unless
// the group is closed.
func (g *Group) addConn(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	if g.conns == nil {
		g.conns = make(map[net.Conn]struct{})
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	return true
}

// run serves c, which addConn registered, and forgets and closes it after.
func (g *Group) run(c net.Conn, handle func(net.Conn)) {
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		delete(g.conns, c)
		g.mu.Unlock()
		c.Close()
	}()
	handle(c)
}

// closedErr is what Serve returns once the group is closed.
func (g *Group) closedErr() error {
	if g.ClosedErr != nil {
		return g.ClosedErr
	}
	return ErrClosed
}
