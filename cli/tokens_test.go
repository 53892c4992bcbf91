package cli

import (
	"strings"
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90d", 90 * 24 * time.Hour, false},
		{"1d", 24 * time.Hour, false},
		{"12h", 12 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"0d", 0, true},
		{"-1h", 0, true},
		{"d", 0, true},
		{"1.5d", 0, true},
		{"soon", 0, true},
		{"99999999d", 0, true},
	}
	for _, tc := range tests {
		got, err := parseLifetime(tc.in)
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "--lifetime") {
				t.Errorf("parseLifetime(%q) = %v, %v; want an error naming --lifetime", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseLifetime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
