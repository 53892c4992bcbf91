package agentnet

import (
	"errors"
	"sync"

	"github.com/tetherdev/tether/tunnel"
)

// Why an agent left, as WatchAgent reports it.
var (
	// ErrAgentLost: the agent's coordination connection broke. Its tunnel
	// may still work for a while, but it is no longer known to be there.
	ErrAgentLost = errors.New("the agent's connection to the server broke")
	// ErrAgentDisconnected: the agent left on purpose (it was stopped).
	ErrAgentDisconnected = errors.New("the agent disconnected")
	// ErrAgentRestarted: the agent came back as a new process; what the
	// old one served (its terminals' processes among them) is gone.
	ErrAgentRestarted = errors.New("the agent restarted")
	// ErrAgentUnreachable: the agent was lost and stopped answering.
	ErrAgentUnreachable = errors.New("the agent stopped answering")
	// ErrTunnelClosed: the server's tunnel to the agent ended, closed or
	// refused by the coordinator (a workspace proxy's, once no grant
	// holds); the next Dial opens another.
	ErrTunnelClosed = errors.New("the tunnel to the agent was closed")
)

// presence is whether the coordinator currently introduces a peer's agent,
// for WatchAgent. left is closed at each departure and replaced at the
// next arrival, so that a watcher always holds the channel of the stay it
// saw: one taken before the first arrival is closed by the first
// departure, one taken while the agent is away is closed already.
type presence struct {
	mu      sync.Mutex
	present bool          // guarded by mu
	left    chan struct{} // guarded by mu
	why     error         // guarded by mu; why it last left
}

func newPresence() *presence {
	return &presence{left: make(chan struct{}), why: ErrAgentLost}
}

// arrived records that the coordinator introduced the agent.
func (p *presence) arrived() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.present = true
	select {
	case <-p.left:
		p.left = make(chan struct{})
	default:
	}
}

// leave records a departure, unless the agent is away already.
func (p *presence) leave(why error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.present = false
	select {
	case <-p.left:
	default:
		p.why = why
		close(p.left)
	}
}

// watch returns the channel of the current stay and what says why it
// ended.
func (p *presence) watch() (<-chan struct{}, func() error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.left, p.reason
}

func (p *presence) reason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.why
}

// peerGone is the tunnel's peer-gone callback for the agent: the tunnel
// has ended the connections with it. It must not block.
func (p *presence) peerGone(why error) {
	switch {
	case errors.Is(why, tunnel.ErrPeerRestarted):
		// A new process is already introduced: a new stay begins.
		p.leave(ErrAgentRestarted)
		p.arrived()
	case errors.Is(why, tunnel.ErrPeerUnreachable):
		p.leave(ErrAgentUnreachable)
	default:
		p.leave(ErrAgentDisconnected)
	}
}
