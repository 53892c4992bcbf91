package agentnet

import (
	"context"
	"sync"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/tunnel"
)

// localStream is an in-process coordination stream between the coordinator
// and one of the server's tunnel peers: requests carry the peer's node, and
// responses are applied to the tunnel directly.
type localStream struct {
	conn     *tunnel.Conn
	presence *presence // of the peer's agent

	mu      sync.Mutex
	node    *tether.Node  // latest node not yet received by the coordinator
	changed chan struct{} // signalled when node is set
}

func newLocalStream(conn *tunnel.Conn, pr *presence) *localStream {
	return &localStream{conn: conn, presence: pr, changed: make(chan struct{}, 1)}
}

// setNode is the tunnel's node callback. It keeps only the latest node, so
// it never blocks the tunnel.
func (s *localStream) setNode(n *tether.Node) {
	s.mu.Lock()
	s.node = n
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *localStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	for {
		s.mu.Lock()
		n := s.node
		s.node = nil
		s.mu.Unlock()
		if n != nil {
			return &tether.CoordinateRequest{Node: n}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.changed:
		}
	}
}

func (s *localStream) Send(ctx context.Context, resp *tether.CoordinateResponse) error {
	if resp.DERPMap != nil {
		s.conn.SetDERPMap(resp.DERPMap)
	}
	for _, u := range resp.Peers {
		switch u.Kind {
		case tether.PeerNode:
			if err := s.conn.UpsertPeer(u.ID, u.Node); err != nil {
				return err
			}
			s.presence.arrived()
		case tether.PeerDisconnected:
			s.presence.leave(ErrAgentDisconnected)
			s.conn.RemovePeer(u.ID)
		case tether.PeerLost:
			// Keep it: its tunnel may still work, and it will likely be
			// reintroduced when its coordination reconnects. The tunnel
			// ends its connections if it stops answering; watchers hear
			// of it now.
			s.presence.leave(ErrAgentLost)
			s.conn.SetPeerLost(u.ID, true)
		}
	}
	return nil
}
