package main

import (
	"math"
	"slices"
	"time"
)

// dist summarizes a sample of durations.
type dist struct {
	N        int
	P50, P99 time.Duration
	Min, Max time.Duration
}

// summarize returns the distribution of ds; the zero dist for no samples.
// Percentiles are nearest-rank, so p99 of fewer than 100 samples is the
// largest one below the top percent, and of 30 samples the maximum.
func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return dist{
		N:   len(s),
		P50: s[rank(len(s), 0.50)],
		P99: s[rank(len(s), 0.99)],
		Min: s[0],
		Max: s[len(s)-1],
	}
}

// rank is the index of the p-th percentile in a sorted sample of n by the
// nearest-rank method: the smallest value with at least p·n values at or
// below it.
func rank(n int, p float64) int {
	r := int(math.Ceil(p*float64(n))) - 1
	return max(0, min(r, n-1))
}

// median returns the middle of xs (the lower middle for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
