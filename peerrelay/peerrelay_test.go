package peerrelay

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"tailscale.com/types/key"
)

// TestAllowed checks which pairs the relay allocates endpoints for: an
// agent and a client bound to it, asked by one of them; nothing else.
func TestAllowed(t *testing.T) {
	r := &Relay{peers: make(map[uuid.UUID]peerInfo), byDisc: make(map[key.DiscoPublic]uuid.UUID)}
	type peer struct {
		id    uuid.UUID
		disco key.DiscoPublic
	}
	add := func(agent uuid.UUID) peer {
		p := peer{id: uuid.New(), disco: key.NewDisco().Public()}
		if agent == uuid.Nil {
			agent = p.id
		}
		r.peers[p.id] = peerInfo{disco: p.disco, agent: agent}
		r.byDisc[p.disco] = p.id
		return p
	}
	agentA, agentB := add(uuid.Nil), add(uuid.Nil)
	clientA, clientA2, clientB := add(agentA.id), add(agentA.id), add(agentB.id)
	stranger := peer{id: uuid.New(), disco: key.NewDisco().Public()}

	for _, tc := range []struct {
		name string
		from peer
		pair [2]peer
		want error
	}{
		{"client asks for its agent", clientA, [2]peer{clientA, agentA}, nil},
		{"agent asks for its client", agentA, [2]peer{agentA, clientA}, nil},
		{"either order", agentB, [2]peer{clientB, agentB}, nil},
		{"client asks for another user's agent", clientB, [2]peer{clientB, agentA}, errNotAPair},
		{"agent asks for a client of another agent", agentA, [2]peer{agentA, clientB}, errNotAPair},
		{"two clients", clientA, [2]peer{clientA, clientA2}, errNotAPair},
		{"two agents", agentA, [2]peer{agentA, agentB}, errNotAPair},
		{"a third party asks for a pair", clientA2, [2]peer{clientA, agentA}, errNotInPair},
		{"an unknown peer", stranger, [2]peer{stranger, agentA}, errUnknownPeer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.allowed(tc.from.id, [2]key.DiscoPublic{tc.pair[0].disco, tc.pair[1].disco})
			if !errors.Is(err, tc.want) {
				t.Errorf("allowed = %v, want %v", err, tc.want)
			}
		})
	}

	// A peer that left is unknown at once.
	r.mu.Lock()
	delete(r.byDisc, clientA.disco)
	delete(r.peers, clientA.id)
	r.mu.Unlock()
	if err := r.allowed(clientA.id, [2]key.DiscoPublic{clientA.disco, agentA.disco}); !errors.Is(err, errUnknownPeer) {
		t.Errorf("after the client left: %v, want %v", err, errUnknownPeer)
	}
}
