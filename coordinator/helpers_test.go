package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/testwait"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

var errBroken = errors.New("stream broken")

// memStream is an in-memory Stream. The test side sends requests on reqs,
// reads responses from resps, and breaks the connection with breakConn.
type memStream struct {
	reqs   chan *tether.CoordinateRequest
	resps  chan *tether.CoordinateResponse
	broken chan struct{}
	once   sync.Once
}

func newMemStream(respBuffer int) *memStream {
	return &memStream{
		reqs:   make(chan *tether.CoordinateRequest),
		resps:  make(chan *tether.CoordinateResponse, respBuffer),
		broken: make(chan struct{}),
	}
}

func (s *memStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	select {
	case r := <-s.reqs:
		return r, nil
	case <-s.broken:
		return nil, errBroken
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *memStream) Send(ctx context.Context, r *tether.CoordinateResponse) error {
	select {
	case s.resps <- r:
		return nil
	case <-s.broken:
		return errBroken
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *memStream) breakConn() { s.once.Do(func() { close(s.broken) }) }

// peer is one test peer served by a coordinator over a memStream. It keeps
// every update it received.
type peer struct {
	t    *testing.T
	id   uuid.UUID
	s    *memStream
	done chan error

	mu      sync.Mutex
	log     []tether.PeerUpdate
	latest  map[uuid.UUID]tether.PeerUpdate
	derpMap *tailcfg.DERPMap
}

func startAgent(t *testing.T, ctx context.Context, c *coordinator.Coordinator, id uuid.UUID) *peer {
	t.Helper()
	p := newPeer(t, id, 64)
	go func() { p.done <- c.ServeAgent(ctx, id, p.s) }()
	return p
}

func startClient(t *testing.T, ctx context.Context, c *coordinator.Coordinator, id, agentID uuid.UUID) *peer {
	t.Helper()
	p := newPeer(t, id, 64)
	go func() { p.done <- c.ServeClient(ctx, id, agentID, p.s) }()
	return p
}

func newPeer(t *testing.T, id uuid.UUID, respBuffer int) *peer {
	p := &peer{t: t, id: id, s: newMemStream(respBuffer), done: make(chan error, 1), latest: make(map[uuid.UUID]tether.PeerUpdate)}
	t.Cleanup(func() {
		p.s.breakConn()
		<-p.done
	})
	return p
}

// send hands r to the coordinator.
func (p *peer) send(ctx context.Context, r *tether.CoordinateRequest) {
	p.t.Helper()
	select {
	case p.s.reqs <- r:
	case <-ctx.Done():
		p.t.Fatalf("peer %s: send: %v", p.id, ctx.Err())
	}
}

func (p *peer) sendNode(ctx context.Context, n *tether.Node) {
	p.t.Helper()
	p.send(ctx, &tether.CoordinateRequest{Node: n})
}

// wait returns the error its Serve call ended with.
func (p *peer) wait(ctx context.Context) error {
	p.t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // let cleanup read it again
		return err
	case <-ctx.Done():
		p.t.Fatalf("peer %s: serve did not return: %v", p.id, ctx.Err())
		return nil
	}
}

// next reads one response and records it.
func (p *peer) next(ctx context.Context, what string) *tether.CoordinateResponse {
	p.t.Helper()
	select {
	case r := <-p.s.resps:
		p.mu.Lock()
		p.log = append(p.log, r.Peers...)
		for _, u := range r.Peers {
			p.latest[u.ID] = u
		}
		if r.DERPMap != nil {
			p.derpMap = r.DERPMap
		}
		p.mu.Unlock()
		return r
	case <-ctx.Done():
		p.t.Fatalf("peer %s: waiting for %s: %v", p.id, what, ctx.Err())
		return nil
	}
}

// await reads responses until cond, given the latest update about each
// peer, holds.
func (p *peer) await(ctx context.Context, what string, cond func(latest map[uuid.UUID]tether.PeerUpdate) bool) {
	p.t.Helper()
	for {
		p.mu.Lock()
		ok := cond(p.latest)
		p.mu.Unlock()
		if ok || p.next(ctx, what) == nil {
			return
		}
	}
}

// awaitNode waits until the latest news about id is its node with marker.
func (p *peer) awaitNode(ctx context.Context, id uuid.UUID, marker int) {
	p.t.Helper()
	p.await(ctx, fmt.Sprintf("node %d of %s", marker, id), func(latest map[uuid.UUID]tether.PeerUpdate) bool {
		u, ok := latest[id]
		return ok && u.Kind == tether.PeerNode && u.Node.PreferredDERP == marker
	})
}

// awaitKind waits until the latest news about id is of the given kind.
func (p *peer) awaitKind(ctx context.Context, id uuid.UUID, kind tether.PeerUpdateKind) tether.PeerUpdate {
	p.t.Helper()
	var got tether.PeerUpdate
	p.await(ctx, fmt.Sprintf("%s of %s", kind, id), func(latest map[uuid.UUID]tether.PeerUpdate) bool {
		got = latest[id]
		return got.Kind == kind
	})
	return got
}

// heard returns the IDs of every peer p has received news about.
func (p *peer) heard() []uuid.UUID {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []uuid.UUID
	for _, u := range p.log {
		if !slices.Contains(ids, u.ID) {
			ids = append(ids, u.ID)
		}
	}
	return ids
}

func (p *peer) updates() []tether.PeerUpdate {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// newNode returns a valid node for id. The marker goes in PreferredDERP so
// that tests can tell versions apart.
func newNode(id uuid.UUID, marker int) *tether.Node {
	return &tether.Node{
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
		PreferredDERP: marker,
		Endpoints:     []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:41641")},
		AsOf:          time.Now().Truncate(time.Second),
	}
}

// waitUntil polls cond until it holds, or fails the test once ctx ends.
var waitUntil = testwait.Until

// netipAddrPort returns a distinct long IPv6 endpoint for each i.
func netipAddrPort(i int) netip.AddrPort {
	a := netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:0").As16()
	a[15] = byte(i)
	a[14] = 0xff
	return netip.AddrPortFrom(netip.AddrFrom16(a), 65535)
}
