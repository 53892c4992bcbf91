// Package storemetrics measures a store.Store: how long each of its
// methods takes and how often it fails, by method, for Prometheus. The
// server wraps its store in it when --prometheus-address is set.
package storemetrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether/store"
)

// Store is a store.Store whose calls are measured. Methods it does not
// wrap (methods.go) reach the inner store unmeasured.
type Store struct {
	store.Store
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// New wraps inner and registers its metrics with reg.
func New(inner store.Store, reg prometheus.Registerer) *Store {
	s := &Store{
		Store: inner,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tether",
			Name:      "store_query_duration_seconds",
			Help:      "Time a call to the server's store (SQLite or PostgreSQL) took, by method.",
			Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tether",
			Name:      "store_query_errors_total",
			Help:      "Calls to the server's store that failed, by method; a thing not found, or already existing, is an answer and not counted.",
		}, []string{"method"}),
	}
	reg.MustRegister(s.duration, s.errors)
	return s
}

// observe records one call of method that started at start and ended
// with *err.
func (m *Store) observe(method string, start time.Time, err *error) {
	m.duration.WithLabelValues(method).Observe(time.Since(start).Seconds())
	if e := *err; e != nil && !errors.Is(e, store.ErrNotFound) && !errors.Is(e, store.ErrConflict) {
		m.errors.WithLabelValues(method).Inc()
	}
}
