package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// TestTerminalUnreachedSaysWhy: a terminal that could not be opened on the
// agent is reported as the agent being offline only when the coordinator
// says so; a connected agent that was too slow, or refused, is not sent
// to be started again.
func TestTerminalUnreachedSaysWhy(t *testing.T) {
	ws := store.Workspace{Owner: "alice", Name: "dev"}
	slow := fmt.Errorf("dial: %w", os.ErrDeadlineExceeded)
	tests := []struct {
		name             string
		connected, known bool
		err              error
		want, notWant    string
	}{
		{"offline", false, true, slow, "is not connected: start it", ""},
		{"connected, too slow to dial", true, true, slow, "is connected but did not answer within 30s", "start it"},
		{"connected, too slow to attach", true, true, context.DeadlineExceeded, "is connected but did not answer", "start it"},
		{"connected, refused", true, true, errors.New("the agent refused: no shell"), "did not open the terminal: the agent refused: no shell", "start it"},
		{"a workspace proxy, which cannot tell", false, false, slow, "it is not connected, or too busy", "start it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := errTerminalUnreached(ws, tt.connected, tt.known, tt.err)
			if tether.ErrorCode(err) != tether.EUNAVAILABLE {
				t.Errorf("code %q, want %q", tether.ErrorCode(err), tether.EUNAVAILABLE)
			}
			if !strings.Contains(err.Error(), tt.want) || tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("%q: want it to say %q and not %q", err, tt.want, tt.notWant)
			}
		})
	}
}
