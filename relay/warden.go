package relay

import (
	"bufio"
	"context"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derpserver"
	"tailscale.com/types/key"
)

// The warden. A key stays known while its peer's coordination stream is
// up. When the coordinator forgets a key (the peer left, or its node
// changed key), the peer's relay connection usually ends too, since the
// peer's tunnel went with it. When it does not, the warden closes it after
// Options.Grace, through the relay's own privileged "close peer" frame: it
// watches the relay's connections as a mesh client would, over an
// in-memory pipe. The grace lets a peer whose coordination WebSocket broke
// reconnect it (after a server blip, or to another replica) without losing
// its relayed tunnels; the tunnels do not depend on the coordinator.

// warden closes the relay connections of keys that Keys has forgotten.
type warden struct {
	derp   *derpserver.Server
	keys   Keys
	grace  time.Duration
	logger *slog.Logger
}

// run watches the relay until ctx ends, watching again a second after a
// watch broke.
func (w *warden) run(ctx context.Context) {
	for {
		err := w.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		w.logger.Warn("relay warden lost its view of the relay; reconnecting", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// watch runs one trusted connection to the relay over an in-memory pipe:
// it learns which clients are connected, and every grace/4 closes those
// whose keys have been unknown for the grace period. It returns when the
// connection ends, or when ctx does.
func (w *warden) watch(ctx context.Context) error {
	ours, theirs := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		w.derp.Accept(ctx, theirs, bufio.NewReadWriter(bufio.NewReader(theirs), bufio.NewWriter(theirs)), "relay warden")
	})
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(wctx, func() { ours.Close() })
	defer func() {
		cancel()
		stop()
		ours.Close() // ends Accept, and a ClosePeer in progress
		wg.Wait()
	}()

	c, err := derp.NewClient(key.NewNode(), ours, bufio.NewReadWriter(bufio.NewReader(ours), bufio.NewWriter(ours)),
		func(string, ...any) {}, derp.MeshKey(w.derp.MeshKey()))
	if err != nil {
		return err
	}
	cs := &clients{since: make(map[key.NodePublic]time.Time)}
	// The pipe has no buffer: the relay's first write (its server info)
	// waits for a reader, and its reader starts only after that, so read
	// before asking for anything.
	recvErr := make(chan error, 1)
	wg.Go(func() { recvErr <- cs.follow(c) })
	if err := c.WatchConnectionChanges(); err != nil {
		return err
	}
	wg.Go(func() {
		t := time.NewTicker(w.grace / 4)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			for _, k := range cs.expired(w.keys, time.Now(), w.grace) {
				w.logger.Info("closing a relay connection: no peer of this deployment has had its key for a while",
					slog.String("key", k.ShortString()), slog.Duration("grace", w.grace))
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
	case <-wctx.Done():
		return wctx.Err()
	}
}

// clients is what the warden knows of the relay's clients.
type clients struct {
	mu sync.Mutex
	// since holds each connected client's key, with the time since which
	// Keys has not known it (zero while it does).
	since map[key.NodePublic]time.Time // guarded by mu
}

// follow tracks the relay's connections until the watch ends.
func (cs *clients) follow(c *derp.Client) error {
	for {
		m, err := c.Recv()
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case derp.PeerPresentMessage:
			// Mesh peers (other relays, this watch) are trusted by their
			// mesh key, not by Keys.
			if m.Flags&derp.PeerPresentIsMeshPeer == 0 {
				cs.present(m.Key)
			}
		case derp.PeerGoneMessage:
			cs.gone(m.Peer)
		}
	}
}

func (cs *clients) present(k key.NodePublic) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.since[k]; !ok {
		cs.since[k] = time.Time{}
	}
}

func (cs *clients) gone(k key.NodePublic) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.since, k)
}

// expired returns the clients whose keys keys has not known for grace as
// of now, and starts the clock for those it just forgot. A returned key's
// clock starts again, so it is closed at most once per grace. Keys is
// asked without holding cs.mu, so that the watch's reader never waits for
// it.
func (cs *clients) expired(keys Keys, now time.Time, grace time.Duration) []key.NodePublic {
	cs.mu.Lock()
	ks := slices.Collect(maps.Keys(cs.since))
	cs.mu.Unlock()
	known := make(map[key.NodePublic]bool, len(ks))
	for _, k := range ks {
		known[k] = keys.KnowsNodeKey(k)
	}

	cs.mu.Lock()
	defer cs.mu.Unlock()
	var out []key.NodePublic
	for k, isKnown := range known {
		since, ok := cs.since[k]
		switch {
		case !ok: // gone meanwhile
		case isKnown:
			cs.since[k] = time.Time{}
		case since.IsZero():
			cs.since[k] = now
		case now.Sub(since) >= grace:
			out = append(out, k)
			cs.since[k] = now
		}
	}
	return out
}
