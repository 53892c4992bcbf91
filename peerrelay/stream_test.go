package peerrelay

import (
	"context"
	"errors"
	"testing"
	"time"

	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
)

// TestStreamSendsEachNodeOnce checks the relay's side of its coordination
// stream: each Recv carries the relay's newest node, a node already sent
// is not sent again, and after a reconnect (run resets sent) the current
// node goes out at once, so the coordinator always knows the relay.
func TestStreamSendsEachNodeOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := &stream{}
	node := func() *tether.Node { return &tether.Node{Key: key.NewNode().Public()} }

	first := node()
	s.node.Put(first)
	if req, err := s.Recv(ctx); err != nil || req.Node != first {
		t.Fatalf("first Recv = %v, %v; want the node put", req, err)
	}

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if req, err := s.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with no new node = %v, %v; want it to wait", req, err)
	}

	second := node()
	s.node.Put(second)
	if req, err := s.Recv(ctx); err != nil || req.Node != second {
		t.Fatalf("Recv after a new node = %v, %v; want the new node", req, err)
	}

	s.sent = nil // what run does before it serves a new stream
	if req, err := s.Recv(ctx); err != nil || req.Node != second {
		t.Fatalf("Recv on a new stream = %v, %v; want the current node again", req, err)
	}
}
