// Package delayproxy is a TCP proxy that holds every byte for a set time
// in each direction: a far-away server on loopback, for the bench and the
// end-to-end tests. The CLI and the agent reach the server through it (the
// server's access URL is the proxy's address), so that API calls, the
// coordination WebSockets and the DERP relay all cross the slow link,
// while direct WireGuard paths (UDP) do not.
//
// It models latency only: bytes leave in the order they came, each one
// delay after the proxy read it, with no bandwidth limit and no loss. The
// delay may change while connections are open; a change applies to bytes
// read from then on (bytes never overtake earlier ones).
//
// It also counts what it sees, so that tests can count round trips rather
// than time them: connections, and flights (a burst of bytes from one side
// that follows bytes from the other side, or opens the connection: a
// request, a response, a WebSocket message and its answer).
package delayproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from its listener to a target address.
type Proxy struct {
	ln     net.Listener
	target atomic.Pointer[string]
	delay  atomic.Int64 // one way, in nanoseconds

	conns         atomic.Int64
	clientFlights atomic.Int64
	serverFlights atomic.Int64

	mu     sync.Mutex
	closed bool                  // guarded by mu
	open   map[net.Conn]struct{} // guarded by mu; both sides of every pair
	wg     sync.WaitGroup
}

// Listen starts a proxy on addr (e.g. "127.0.0.1:0") to target, with no
// delay. The target may be set later (SetTarget), before the first
// connection comes.
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, open: make(map[net.Conn]struct{})}
	p.target.Store(&target)
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr returns the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections go.
func (p *Proxy) SetTarget(addr string) { p.target.Store(&addr) }

// SetDelay sets the one-way delay: a round trip through the proxy takes
// twice as long as without it, plus 2×d.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Stats are what the proxy has counted since it started.
type Stats struct {
	Conns int64 // connections accepted
	// ClientFlights and ServerFlights count bursts from each side: bytes
	// that open a connection or follow bytes from the other side.
	ClientFlights, ServerFlights int64
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Conns: p.conns.Load(), ClientFlights: p.clientFlights.Load(), ServerFlights: p.serverFlights.Load()}
}

// Close stops the proxy: it closes its listener and every connection, and
// returns once its goroutines have ended.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		p.wg.Add(1)
		go p.handle(c)
	}
}

// track adds c to the open connections, or closes it if the proxy is
// closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.open[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.open, c)
	p.mu.Unlock()
	c.Close()
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	server, err := net.Dial("tcp", *p.target.Load())
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	// last says which side sent the latest bytes (0 none, 1 client, 2
	// server), to count flights.
	var last atomic.Int32
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(server, client, &last, 1, &p.clientFlights)
	}()
	go func() {
		defer wg.Done()
		p.pipe(client, server, &last, 2, &p.serverFlights)
	}()
	wg.Wait()
}

// chunk is bytes read from one side, due at the other side at due.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each read delivered one delay after it was
// read. At src's end it closes dst's write side (a half close passes
// through); at an error writing dst it closes src.
func (p *Proxy) pipe(dst, src net.Conn, last *atomic.Int32, side int32, flights *atomic.Int64) {
	// The queue decouples reading from delivering: reads go on while
	// earlier bytes wait out their delay, as on a long link.
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(0)
		defer t.Stop()
		<-t.C
		failed := false
		for c := range q {
			if failed {
				continue // drain, so that the reader never blocks
			}
			if d := time.Until(c.due); d > 0 {
				t.Reset(d)
				<-t.C
			}
			if _, err := dst.Write(c.b); err != nil {
				failed = true
				src.Close()
			}
		}
		if !failed {
			closeWrite(dst)
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			if last.Swap(side) != side {
				flights.Add(1)
			}
			q <- chunk{b: buf[:n], due: time.Now().Add(time.Duration(p.delay.Load()))}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				// A reset or a close: the other direction ends too.
				dst.Close()
			}
			break
		}
	}
	close(q)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
