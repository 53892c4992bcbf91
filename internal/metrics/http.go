package metrics

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTP counts a server's requests by route and status, with their
// latency. Routes are the patterns of the server's routing table (or a
// fixed name for what the table does not route), never raw paths: a path
// holds user and workspace names, which would make a series per name.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// NewHTTP registers the request metrics with reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace,
			Name:      "http_requests_total",
			Help:      "HTTP requests answered, by route pattern, method and status code (101 for WebSockets and the relay's upgrades).",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace,
			Name:      "http_request_duration_seconds",
			Help:      "Time to answer an HTTP request, by route pattern and method; for upgrades (WebSockets, the relay), the time until the upgrade.",
			Buckets:   []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace,
			Name:      "http_requests_in_flight",
			Help:      "HTTP requests being answered now, upgraded connections excluded.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inFlight)
	return m
}

// Wrap measures h. route names a request's route once h has served it
// (when http.ServeMux has set r.Pattern); it must return one of a few
// fixed values. A nil HTTP returns h unchanged.
func (m *HTTP) Wrap(h http.Handler, route func(*http.Request) string) http.Handler {
	if m == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, inFlight: m.inFlight}
		start := time.Now()
		m.inFlight.Inc()
		defer func() {
			if v := recover(); v != nil {
				// The server drops the connection: count it as the
				// failure it is, and let the panic go on.
				m.observe(route(r), r.Method, rec, start, http.StatusInternalServerError)
				panic(v)
			}
			m.observe(route(r), r.Method, rec, start, 0)
		}()
		h.ServeHTTP(rec, r)
	})
}

// observe counts one request once its handler returned. code overrides
// what the handler answered, when not 0.
func (m *HTTP) observe(route, method string, rec *recorder, start time.Time, code int) {
	end := rec.upgraded
	if !rec.hijacked {
		m.inFlight.Dec()
	}
	if end.IsZero() {
		end = time.Now()
	}
	if code == 0 {
		switch {
		case rec.hijacked:
			code = http.StatusSwitchingProtocols
		case rec.code == 0:
			code = http.StatusOK // a handler that writes nothing answers 200
		default:
			code = rec.code
		}
	}
	method = methodLabel(method)
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(end.Sub(start).Seconds())
}

// methodLabel keeps the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// recorder notes the status a handler answers with, and when it took the
// connection over. It passes on what the handlers of WebSockets, the relay
// and streaming responses need of their ResponseWriter.
type recorder struct {
	http.ResponseWriter
	inFlight prometheus.Gauge // left as soon as the connection is taken over
	code     int
	hijacked bool
	upgraded time.Time // when the handler hijacked the connection, or wrote 101
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
		if code == http.StatusSwitchingProtocols {
			r.upgraded = time.Now()
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("metrics: the connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err == nil && !r.hijacked {
		r.hijacked = true
		r.inFlight.Dec()
		if r.upgraded.IsZero() {
			r.upgraded = time.Now()
		}
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's own writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
