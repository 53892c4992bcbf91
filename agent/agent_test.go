package agent

import (
	"testing"
	"time"
)

func TestDuplicateRetry(t *testing.T) {
	for _, tt := range []struct {
		refusals int
		want     time.Duration
	}{
		{1, 5 * time.Second},
		{2, 10 * time.Second},
		{3, 20 * time.Second},
		{4, 30 * time.Second},
		{100, 30 * time.Second},
	} {
		if got := duplicateRetry(tt.refusals); got != tt.want {
			t.Errorf("duplicateRetry(%d) = %v, want %v", tt.refusals, got, tt.want)
		}
	}
}
