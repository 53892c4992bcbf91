package peerrelay

import (
	"errors"
	"testing"

	"github.com/google/uuid"
	"tailscale.com/types/key"
)

// TestAllowed checks which pairs the relay allocates endpoints for: an
// agent and a client bound to it, asked by one of them; nothing else, and
// no claim of another peer's disco key changes that.
func TestAllowed(t *testing.T) {
	r := &Relay{peers: make(map[uuid.UUID]peerInfo), clients: make(map[uuid.UUID]map[uuid.UUID]struct{})}
	type peer struct {
		id    uuid.UUID
		disco key.DiscoPublic
	}
	// add records a peer as the coordinator introduces it (upsert, without
	// the tunnel); disco, if not zero, is the key it claims.
	add := func(agent uuid.UUID, disco key.DiscoPublic) peer {
		p := peer{id: uuid.New(), disco: disco}
		if p.disco.IsZero() {
			p.disco = key.NewDisco().Public()
		}
		if agent == uuid.Nil {
			agent = p.id
		}
		r.record(p.id, agent, p.disco)
		return p
	}
	var none key.DiscoPublic
	agentA, agentB := add(uuid.Nil, none), add(uuid.Nil, none)
	clientA, clientA2, clientB := add(agentA.id, none), add(agentA.id, none), add(agentB.id, none)
	stranger := peer{id: uuid.New(), disco: key.NewDisco().Public()}
	// B's clients claiming A's keys (they hold neither private half).
	forgedAgent, forgedClient := add(agentB.id, agentA.disco), add(agentB.id, clientA.disco)

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
		{"a client with a forged agent's key asks for the agent's client", forgedAgent, [2]peer{forgedAgent, clientA}, errNotAPair},
		{"a client with a forged client's key asks for that client's agent", forgedClient, [2]peer{forgedClient, agentA}, errNotAPair},
		{"a forged key does not take the client's pair", clientA, [2]peer{clientA, agentA}, nil},
		{"nor the agent's", agentA, [2]peer{agentA, clientA}, nil},
		{"the forger's own agent and the forged key", agentB, [2]peer{agentB, forgedClient}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.allowed(tc.from.id, [2]key.DiscoPublic{tc.pair[0].disco, tc.pair[1].disco})
			if !errors.Is(err, tc.want) {
				t.Errorf("allowed = %v, want %v", err, tc.want)
			}
		})
	}

	// A peer that left is unknown at once, and so is an agent's client.
	r.mu.Lock()
	r.forgetLocked(clientA.id)
	r.mu.Unlock()
	if err := r.allowed(clientA.id, [2]key.DiscoPublic{clientA.disco, agentA.disco}); !errors.Is(err, errUnknownPeer) {
		t.Errorf("after the client left, the client: %v, want %v", err, errUnknownPeer)
	}
	if err := r.allowed(agentA.id, [2]key.DiscoPublic{agentA.disco, clientA.disco}); !errors.Is(err, errNotAPair) {
		t.Errorf("after the client left, its agent: %v, want %v", err, errNotAPair)
	}
	r.mu.Lock()
	r.forgetLocked(agentA.id)
	r.mu.Unlock()
	if err := r.allowed(clientA2.id, [2]key.DiscoPublic{clientA2.disco, agentA.disco}); !errors.Is(err, errUnknownPeer) {
		t.Errorf("after the agent left, its client: %v, want %v", err, errUnknownPeer)
	}
}
