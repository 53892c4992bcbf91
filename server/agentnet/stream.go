package agentnet

import (
	"context"

	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/internal/mailbox"
	"github.com/tetherdev/tether/tunnel"
)

// localStream is an in-process coordination stream between the coordinator
// and one of the server's tunnel peers: requests carry the peer's node, and
// responses are applied to the tunnel by the same rules as every other
// peer's (coordclient.Peers).
type localStream struct {
	node  mailbox.Mailbox[*tether.Node] // the peer's latest node
	sent  *tether.Node                  // the last node Recv returned; only Recv uses it
	peers *coordclient.Peers
}

// setNode is the tunnel's node callback. It never blocks the tunnel.
func (s *localStream) setNode(n *tether.Node) { s.node.Put(n) }

func (s *localStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	n, err := mailbox.Next(ctx, &s.node, s.sent)
	if err != nil {
		return nil, err
	}
	s.sent = n
	return &tether.CoordinateRequest{Node: n}, nil
}

// Send applies resp. The coordinator checked its nodes as they reached it.
func (s *localStream) Send(ctx context.Context, resp *tether.CoordinateResponse) error {
	s.peers.Apply(resp)
	return nil
}

// agentTunnel is a server tunnel as coordclient.Peers drives it: what the
// coordinator says of the agent also goes to the agent's presence, for
// WatchAgent. (Its removal reaches the presence through the tunnel's
// peer-gone callback, ErrPeerLeft.) The agent is the only peer the
// coordinator introduces to it.
type agentTunnel struct {
	*tunnel.Conn
	agentID  uuid.UUID
	presence *presence
}

func (t agentTunnel) UpsertPeer(id uuid.UUID, n *tether.Node) error {
	if err := t.Conn.UpsertPeer(id, n); err != nil {
		return err
	}
	if id == t.agentID {
		t.presence.arrived()
	}
	return nil
}

func (t agentTunnel) SetPeerLost(id uuid.UUID, lost bool) {
	if lost && id == t.agentID {
		// Its tunnel may still work, and it will likely be
		// reintroduced when its coordination reconnects. The tunnel
		// ends its connections if it stops answering; watchers hear of
		// it now.
		t.presence.leave(ErrAgentLost)
	}
	t.Conn.SetPeerLost(id, lost)
}
