package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// The admission controller. The library's relay (derpserver) checks a
// client, once its handshake has named its key, by POSTing a
// tailcfg.DERPAdmitClientRequest to an admission URL
// (Server.SetVerifyClientURL) with net/http's default client, and refuses
// the client unless the answer allows it, or if there is no answer within
// 5 s. The relay serves that URL on a loopback listener of its own, at a
// random path that nothing outside the process learns; a relay with no
// answer refuses (the library can fail open; we never ask it to).
//
// A peer's tunnel dials its home relay as soon as it starts, which is
// usually before its node has reached the coordinator over the
// coordination WebSocket (tens of milliseconds later; longer on a loaded
// server or across replicas). A refused client retries after a short
// backoff, but every packet it sent on the refused connection is lost, and
// a lost WireGuard handshake costs 5 s. So the relay does not refuse an
// unknown key at once: it holds the admission until the key becomes known
// or Options.AdmitWait passes. Meanwhile the client's packets wait in the
// connection, and the relay reads them as soon as it admits the client.

// logEvery spaces the log lines about refused clients, which an attacker
// may cause at will.
const logEvery = time.Minute

// maxAdmitRequest bounds the admission request body; a real one is ~100
// bytes.
const maxAdmitRequest = 4 << 10

// admission is the admission controller of one relay.
type admission struct {
	keys   Keys
	wait   time.Duration
	logger *slog.Logger
	http   *http.Server
	url    string // secret to this process
	done   chan struct{}
	// ctx ends at close, and with it the admissions that wait: Server.Close
	// does not wait for handlers.
	ctx    context.Context
	cancel context.CancelFunc

	logMu   sync.Mutex
	refused int       // since the last log line; guarded by logMu
	lastLog time.Time // guarded by logMu
}

// startAdmission serves the admission controller of srv on a loopback
// listener and makes srv use it. srv must not be serving clients yet.
func startAdmission(srv *derpserver.Server, keys Keys, wait time.Duration, logger *slog.Logger) (*admission, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, fmt.Errorf("relay admission controller: %w", err)
	}
	a := &admission{keys: keys, wait: wait, logger: logger, done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	path := "/admit/" + randomHex()
	a.url = "http://" + ln.Addr().String() + path
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, a.admit)
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return a.ctx },
	}
	go func() {
		defer close(a.done)
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("relay admission controller stopped; the relay refuses every client", slog.Any("error", err))
		}
	}()
	srv.SetVerifyClientURL(a.url)
	srv.SetVerifyClientURLFailOpen(false)
	return a, nil
}

// listenLoopback listens on a free port of the IPv4 loopback, or of the
// IPv6 one on hosts without IPv4.
func listenLoopback() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		return ln, nil
	}
	if ln6, err6 := net.Listen("tcp", "[::1]:0"); err6 == nil {
		return ln6, nil
	}
	return nil, err
}

// close stops the controller, ending the admissions that wait: their
// clients are refused.
func (a *admission) close() {
	a.cancel()
	a.http.Close()
	<-a.done
}

// admit answers one admission request of the relay.
func (a *admission) admit(w http.ResponseWriter, r *http.Request) {
	var req tailcfg.DERPAdmitClientRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAdmitRequest)).Decode(&req); err != nil || req.NodePublic.IsZero() {
		http.Error(w, "malformed admission request", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.wait)
	allow := a.keys.AwaitNodeKey(ctx, req.NodePublic)
	cancel()
	if !allow {
		a.noteRefused(req.NodePublic, req.Source.String())
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
}

// noteRefused logs a refused client: the first at once, then a count at
// most once per logEvery.
func (a *admission) noteRefused(k key.NodePublic, from string) {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	a.refused++
	if now := time.Now(); now.Sub(a.lastLog) >= logEvery {
		a.logger.Info("relay refused clients that are no peer of this deployment (DERP connections with keys the coordinator does not know)",
			slog.Int("refused", a.refused), slog.String("last_key", k.ShortString()), slog.String("last_from", from))
		a.refused, a.lastLog = 0, now
	}
}
