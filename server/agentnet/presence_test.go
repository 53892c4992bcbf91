package agentnet

import (
	"errors"
	"testing"

	"github.com/tetherdev/tether/tunnel"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestPresence checks what a terminal watching the agent hears, in the
// orders events come in: a watcher holds the channel of the stay it saw.
func TestPresence(t *testing.T) {
	p := newPresence()
	early, _ := p.watch() // before the first introduction: the dial is still waiting
	p.arrived()
	w1, why1 := p.watch()
	if isClosed(early) || isClosed(w1) {
		t.Fatal("a present agent's channel is closed")
	}
	if early != w1 {
		t.Error("a watcher from before the first introduction is not told of the first departure")
	}

	p.leave(ErrAgentLost)
	if !isClosed(w1) || !errors.Is(why1(), ErrAgentLost) {
		t.Fatalf("after the coordinator lost the agent: closed %v, why %v", isClosed(w1), why1())
	}
	away, _ := p.watch()
	if !isClosed(away) {
		t.Error("watching an agent that is away does not say so at once")
	}

	// Back as a new process: the tunnel says it restarted, then the
	// coordinator's introduction arrives.
	p.arrived()
	w2, why2 := p.watch()
	p.peerGone(tunnel.ErrPeerRestarted)
	if !isClosed(w2) || !errors.Is(why2(), ErrAgentRestarted) {
		t.Fatalf("after a restart: closed %v, why %v", isClosed(w2), why2())
	}
	w3, _ := p.watch()
	if isClosed(w3) {
		t.Error("the restarted agent's new stay starts closed")
	}
	p.peerGone(tunnel.ErrPeerUnreachable)
	if !isClosed(w3) || !errors.Is(p.reason(), ErrAgentUnreachable) {
		t.Errorf("after the agent stopped answering: closed %v, why %v", isClosed(w3), p.reason())
	}
}
