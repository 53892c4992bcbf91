package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/tunnel"
)

func TestPingStats(t *testing.T) {
	relayed := func(ms int) tunnel.PingResult {
		return tunnel.PingResult{DERPRegionCode: "tether", Latency: time.Duration(ms) * time.Millisecond}
	}
	direct := func(ms int) tunnel.PingResult {
		r := relayed(ms)
		r.Direct, r.Endpoint = true, "10.0.0.2:41641"
		return r
	}
	tests := []struct {
		name        string
		sent        int
		pongs       []tunnel.PingResult
		untilDirect bool
		summary     string
		err         string // "" for success
	}{
		{"all answered", 3, []tunnel.PingResult{relayed(30), direct(10), direct(20)}, false,
			"3 pings sent, 3 pongs received, 0% loss, min/avg/max 10ms/20ms/30ms", ""},
		{"some lost", 4, []tunnel.PingResult{direct(20)}, false, "4 pings sent, 1 pong received, 75% loss, min/avg/max 20ms/20ms/20ms", ""},
		{"none answered", 2, nil, false, "2 pings sent, 0 pongs received, 100% loss", "no pong from me/dev (2 pings sent)"},
		{"until direct, reached", 2, []tunnel.PingResult{relayed(30), direct(10)}, true, "2 pings sent, 2 pongs received, 0% loss", ""},
		{"until direct, never", 2, []tunnel.PingResult{relayed(30), relayed(30)}, true, "2 pings sent, 2 pongs received, 0% loss",
			"no direct path to me/dev within 2 pings: every pong came through a relay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := pingStats{sent: tc.sent}
			for _, p := range tc.pongs {
				s.add(p)
			}
			sum := s.summary("dev")
			if !strings.HasPrefix(sum, "--- dev ping statistics ---\n") || !strings.Contains(sum, tc.summary) {
				t.Errorf("summary %q, want %q", sum, tc.summary)
			}
			err := s.err("me/dev", tc.untilDirect)
			if got := fmt.Sprint(err); tc.err == "" && err != nil || tc.err != "" && got != tc.err {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestPingError(t *testing.T) {
	gone := errors.New("the agent of me/dev disconnected")
	tests := []struct {
		err  error
		gone error
		want string
	}{
		{fmt.Errorf("ping fd7a::1: %w", context.DeadlineExceeded), nil, "no pong within 2s"},
		{errors.New("ping fd7a::1: tunnel closed"), gone, gone.Error()},
		{errors.New("ping fd7a::1: no matching peer"), nil, "ping fd7a::1: no matching peer"},
	}
	for _, tc := range tests {
		if got := pingError(tc.err, 2*time.Second, tc.gone); got != tc.want {
			t.Errorf("pingError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
