// Package relayguard keeps the server's built-in DERP relay for the
// deployment's own peers. A DERP relay forwards packets between any two
// clients that connect to it, and a client names itself by nothing but a
// key it made up; left open, the relay carries anyone's traffic on the
// server's bandwidth.
//
// The guard admits a client only if its key is the tunnel key of a peer the
// coordinator knows (an agent, a user's CLI, one of the server's own
// tunnels, on this replica or another: see coordinator.KnowsNodeKey), and
// closes the connection of a client whose key the coordinator has
// forgotten for a while. Other replicas' relays, and tools of our own,
// connect with the deployment's mesh key, which the relay trusts without
// asking (as Tailscale's derper does for the nodes of one region).
//
// # Admission
//
// The library's relay (derpserver) checks a client, once its handshake has
// named its key, by POSTing a tailcfg.DERPAdmitClientRequest to an
// admission URL (Server.SetVerifyClientURL) with net/http's default client,
// and refuses the client unless the answer allows it, or if there is no
// answer within 5 s. The guard serves that URL on a loopback listener of
// its own, at a random path that nothing outside the process learns; a
// relay with no answer refuses (the library can fail open; we never ask it
// to).
//
// A peer's tunnel dials its home relay as soon as it starts, which is
// usually before its node has reached the coordinator over the
// coordination WebSocket (tens of milliseconds later; longer on a loaded
// server or across replicas). A refused client retries after a short
// backoff, but every packet it sent on the refused connection is lost, and
// a lost WireGuard handshake costs 5 s. So the guard does not refuse an
// unknown key at once: it holds the admission until the key becomes known
// or Options.AdmitWait passes. Meanwhile the client's packets wait in the
// connection, and the relay reads them as soon as it admits the client.
//
// # Forgotten keys
//
// A key stays known while its peer's coordination stream is up. When the
// coordinator forgets a key (the peer left, or its node changed key), the
// peer's relay connection usually ends too, since the peer's tunnel went
// with it. When it does not, the guard closes it after Options.Grace,
// through the relay's own privileged "close peer" frame: it watches the
// relay's connections as a mesh client would, over an in-memory pipe. The
// grace lets a peer whose coordination WebSocket broke reconnect it (after
// a server blip, or to another replica) without losing its relayed
// tunnels; the tunnels do not depend on the coordinator.
package relayguard

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// Keys is what the guard asks of the coordinator.
type Keys interface {
	// KnowsNodeKey reports whether a peer of the deployment has key k.
	KnowsNodeKey(k key.NodePublic) bool
	// AwaitNodeKey waits until KnowsNodeKey(k) and returns true, or
	// returns false when ctx is done.
	AwaitNodeKey(ctx context.Context, k key.NodePublic) bool
}

// Defaults for the Options left zero.
const (
	// DefaultAdmitWait leaves an answer well within the library's 5 s
	// bound on an admission request, and is far longer than a peer's node
	// takes to reach the coordinator (tens of milliseconds on loopback).
	DefaultAdmitWait = 3 * time.Second
	// DefaultGrace is longer than a peer needs to reconnect its
	// coordination WebSocket (backoff of at most 30 s, or a dead
	// replica's 2 s heartbeats missed and a reconnect to another).
	DefaultGrace = time.Minute
)

// Options configure a Guard.
type Options struct {
	// Logger receives refusals (a summary at most once per LogEvery) and
	// closed connections; nil discards.
	Logger *slog.Logger
	// AdmitWait bounds how long an admission waits for an unknown key to
	// become known. Zero means DefaultAdmitWait.
	AdmitWait time.Duration
	// Grace is how long a connected client's key may stay unknown before
	// the guard closes its connection. Zero means DefaultGrace.
	Grace time.Duration
}

// logEvery spaces the log lines about refused clients, which an attacker
// may cause at will.
const logEvery = time.Minute

// maxAdmitRequest bounds the admission request body; a real one is ~100
// bytes.
const maxAdmitRequest = 4 << 10

// Guard is the admission controller and warden of one relay. Close it
// before the relay.
type Guard struct {
	derp   *derpserver.Server
	logger *slog.Logger
	wait   time.Duration
	grace  time.Duration

	keys atomic.Pointer[keysRef] // nil until Attach: everyone but mesh peers is refused

	ln   net.Listener
	http *http.Server
	url  string // the admission URL, secret to this process

	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	logMu     sync.Mutex
	refused   int       // since the last log line; guarded by logMu
	lastLog   time.Time // guarded by logMu
	closeOnce sync.Once
}

// keysRef boxes a Keys for the atomic pointer.
type keysRef struct{ Keys }

// New starts the admission controller of d on a loopback listener and
// makes d use it: from now on d admits only its mesh peers until Attach
// names the keys it may admit. d must not be serving clients yet. A relay
// without a mesh key gets a random one: the warden needs one, and a random
// key is as good as none for anyone else. (Replicas set theirs, shared,
// before Attach.)
func New(d *derpserver.Server, opts Options) (*Guard, error) {
	if opts.AdmitWait <= 0 {
		opts.AdmitWait = DefaultAdmitWait
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !d.HasMeshKey() {
		if err := d.SetMeshKey(randomHex()); err != nil {
			return nil, fmt.Errorf("relay mesh key: %w", err)
		}
	}
	ln, err := listenLoopback()
	if err != nil {
		return nil, fmt.Errorf("relay admission controller: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Guard{
		derp:   d,
		logger: logger,
		wait:   opts.AdmitWait,
		grace:  opts.Grace,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
	}
	path := "/admit/" + randomHex()
	g.url = "http://" + ln.Addr().String() + path
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+path, g.admit)
	g.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	g.wg.Go(func() {
		if err := g.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("relay admission controller stopped; the relay refuses every client", slog.Any("error", err))
		}
	})
	d.SetVerifyClientURL(g.url)
	d.SetVerifyClientURLFailOpen(false)
	return g, nil
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

// randomHex returns 32 random bytes in hex.
func randomHex() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Attach starts admitting the clients whose keys keys knows, and closing
// the connections of those it forgot. Call it once.
func (g *Guard) Attach(keys Keys) {
	if !g.keys.CompareAndSwap(nil, &keysRef{keys}) {
		panic("relayguard: Attach called twice")
	}
	g.wg.Go(func() { g.warden(keys) })
}

// Close stops the warden and the admission controller; the relay refuses
// every client from then on (it gets no answer).
func (g *Guard) Close() {
	g.closeOnce.Do(func() {
		g.cancel()
		g.http.Close()
		g.wg.Wait()
	})
}

// admit answers one admission request of the relay.
func (g *Guard) admit(w http.ResponseWriter, r *http.Request) {
	var req tailcfg.DERPAdmitClientRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAdmitRequest)).Decode(&req); err != nil || req.NodePublic.IsZero() {
		http.Error(w, "malformed admission request", http.StatusBadRequest)
		return
	}
	allow := false
	if ref := g.keys.Load(); ref != nil {
		ctx, cancel := context.WithTimeout(r.Context(), g.wait)
		allow = ref.AwaitNodeKey(ctx, req.NodePublic)
		cancel()
	}
	if !allow {
		g.noteRefused(req.NodePublic, req.Source.String())
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(tailcfg.DERPAdmitClientResponse{Allow: allow})
}

// noteRefused logs a refused client: the first at once, then a count at
// most once per logEvery.
func (g *Guard) noteRefused(k key.NodePublic, from string) {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	g.refused++
	if now := time.Now(); now.Sub(g.lastLog) >= logEvery {
		g.logger.Info("relay refused clients that are no peer of this deployment (DERP connections with keys the coordinator does not know)",
			slog.Int("refused", g.refused), slog.String("last_key", k.ShortString()), slog.String("last_from", from))
		g.refused, g.lastLog = 0, now
	}
}

// warden watches the relay's connections and closes those whose keys have
// been unknown for the grace period, until Close.
func (g *Guard) warden(keys Keys) {
	for {
		err := g.watch(keys)
		if g.ctx.Err() != nil {
			return
		}
		g.logger.Warn("relay warden lost its view of the relay; reconnecting", slog.Any("error", err))
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// watch runs one trusted connection to the relay over an in-memory pipe:
// it learns which clients are connected, and every grace/4 closes those
// whose keys have been unknown for the grace period. It returns when the
// connection ends, or at Close.
func (g *Guard) watch(keys Keys) error {
	ours, theirs := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		g.derp.Accept(g.ctx, theirs, bufio.NewReadWriter(bufio.NewReader(theirs), bufio.NewWriter(theirs)), "relayguard")
	})
	ctx, cancel := context.WithCancel(g.ctx)
	stop := context.AfterFunc(ctx, func() { ours.Close() })
	defer func() {
		cancel()
		stop()
		ours.Close() // ends Accept, and a ClosePeer in progress
		wg.Wait()
	}()

	c, err := derp.NewClient(key.NewNode(), ours, bufio.NewReadWriter(bufio.NewReader(ours), bufio.NewWriter(ours)),
		func(string, ...any) {}, derp.MeshKey(g.derp.MeshKey()))
	if err != nil {
		return err
	}
	w := &watched{clients: make(map[key.NodePublic]time.Time)}
	// The pipe has no buffer: the relay's first write (its server info)
	// waits for a reader, and its reader starts only after that, so read
	// before asking for anything.
	recvErr := make(chan error, 1)
	wg.Go(func() { recvErr <- w.read(c) })
	if err := c.WatchConnectionChanges(); err != nil {
		return err
	}
	wg.Go(func() {
		t := time.NewTicker(g.grace / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, k := range w.expired(keys, time.Now(), g.grace) {
				g.logger.Info("closing a relay connection: no peer of this deployment has had its key for a while",
					slog.String("key", k.ShortString()), slog.Duration("grace", g.grace))
				if err := c.ClosePeer(k); err != nil {
					cancel() // the connection broke: Recv ends too
					return
				}
			}
		}
	})

	select {
	case err := <-recvErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// read follows the relay's connections until the watch ends.
func (w *watched) read(c *derp.Client) error {
	for {
		m, err := c.Recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case derp.PeerPresentMessage:
			// Mesh peers (other replicas, this watch) are trusted by
			// their mesh key, not by the coordinator.
			if m.Flags&derp.PeerPresentIsMeshPeer == 0 {
				w.present(m.Key)
			}
		case derp.PeerGoneMessage:
			w.gone(m.Peer)
		}
	}
}

// watched is what the warden knows of the relay's clients.
type watched struct {
	mu sync.Mutex
	// clients holds each connected client's key, with the time since
	// which the coordinator has not known it (zero while it does).
	clients map[key.NodePublic]time.Time // guarded by mu
}

func (w *watched) present(k key.NodePublic) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.clients[k]; !ok {
		w.clients[k] = time.Time{}
	}
}

func (w *watched) gone(k key.NodePublic) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.clients, k)
}

// expired returns the clients whose keys keys has not known for grace as
// of now, and starts the clock for those it just forgot. A returned key's
// clock starts again, so it is closed at most once per grace. The
// coordinator is asked without holding w.mu, so that the watch's reader
// never waits for it.
func (w *watched) expired(keys Keys, now time.Time, grace time.Duration) []key.NodePublic {
	w.mu.Lock()
	ks := slices.Collect(maps.Keys(w.clients))
	w.mu.Unlock()
	known := make(map[key.NodePublic]bool, len(ks))
	for _, k := range ks {
		known[k] = keys.KnowsNodeKey(k)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	var out []key.NodePublic
	for k, isKnown := range known {
		since, ok := w.clients[k]
		switch {
		case !ok: // gone meanwhile
		case isKnown:
			w.clients[k] = time.Time{}
		case since.IsZero():
			w.clients[k] = now
		case now.Sub(since) >= grace:
			out = append(out, k)
			w.clients[k] = now
		}
	}
	return out
}
