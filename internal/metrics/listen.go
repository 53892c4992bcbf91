package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Listener is an operator's HTTP endpoint on an address of its own
// (never the access URL): metrics, or the profiler.
type Listener struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Addr is the address the listener is bound to.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close stops the listener and waits for its requests, briefly.
func (l *Listener) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := l.srv.Shutdown(ctx)
	if err != nil {
		err = l.srv.Close()
	}
	<-l.done
	return err
}

func serve(flag, addr string, h http.Handler, logger *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --%s %s: %w", flag, addr, err)
	}
	l := &Listener{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("listener stopped", slog.String("flag", flag), slog.Any("err", err))
		}
	}()
	return l, nil
}

// ListenPrometheus serves reg at /metrics on addr (--prometheus-address).
//
// Metrics name no secret, but they tell how many users and workspaces a
// deployment has and what they do, and scraping costs CPU; so an address
// that is not loopback is allowed (Prometheus usually scrapes from another
// host) but logged as a warning, to be protected by a firewall.
func ListenPrometheus(addr string, reg *prometheus.Registry, logger *slog.Logger) (*Listener, error) {
	loopback, err := isLoopback(addr)
	if err != nil {
		return nil, fmt.Errorf("--prometheus-address %q: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	l, err := serve("prometheus-address", addr, mux, logger)
	if err != nil {
		return nil, err
	}
	if !loopback {
		logger.Warn("Prometheus metrics are served beyond this machine: let only your Prometheus reach this address",
			slog.String("addr", l.Addr().String()))
	}
	logger.Info("serving Prometheus metrics", slog.String("url", "http://"+l.Addr().String()+"/metrics"))
	return l, nil
}

// ListenPprof serves Go's profiler at /debug/pprof/ on addr
// (--pprof-address), which must be a loopback address: profiles and
// goroutine dumps show the process's insides, and a CPU profile slows it
// down. Reach it from elsewhere through an SSH tunnel.
func ListenPprof(addr string, logger *slog.Logger) (*Listener, error) {
	loopback, err := isLoopback(addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-address %q: %w", addr, err)
	}
	if !loopback {
		return nil, fmt.Errorf("--pprof-address %q must be a loopback address such as 127.0.0.1:6060: the profiler shows the process's memory to whoever reaches it", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	l, err := serve("pprof-address", addr, mux, logger)
	if err != nil {
		return nil, err
	}
	logger.Info("serving the Go profiler", slog.String("url", "http://"+l.Addr().String()+"/debug/pprof/"))
	return l, nil
}

// isLoopback reports whether the host:port addr listens on loopback only.
// An empty host listens on every interface.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, errors.New("want host:port, such as 127.0.0.1:2112")
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}
