package rtcterm

import (
	"slices"
	"sync"
	"testing"

	"github.com/tetherdev/tether"
)

// TestSignallerAnswerFirst: candidates pion reports before the answer is
// sent go out after it, in the order they came; later ones at once.
func TestSignallerAnswerFirst(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	s := &signaller{send: func(m tether.TerminalSignal) {
		mu.Lock()
		defer mu.Unlock()
		what := string(m.Type)
		if m.Candidate != nil {
			what += " " + m.Candidate.Candidate
		}
		sent = append(sent, what)
	}}
	cand := func(c string) tether.TerminalSignal {
		return tether.TerminalSignal{Type: tether.SignalCandidate, Candidate: &tether.ICECandidate{Candidate: c}}
	}
	s.candidate(cand("host"))
	s.candidate(cand("srflx"))
	if len(sent) != 0 {
		t.Fatalf("sent %q before the answer", sent)
	}
	s.answer(tether.TerminalSignal{Type: tether.SignalAnswer, SDP: "v=0"})
	s.candidate(cand("relay"))
	want := []string{"answer", "candidate host", "candidate srflx", "candidate relay"}
	if !slices.Equal(sent, want) {
		t.Errorf("sent %q, want %q", sent, want)
	}
}
