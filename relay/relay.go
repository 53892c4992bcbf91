// Package relay is the relay infrastructure a Tether server runs for its
// peers: the built-in DERP relay (DERP), the STUN servers of its region
// (STUN), the mesh that joins its relay to the other relays of the
// deployment, and the admission that keeps the relay for the deployment's
// own peers.
//
// It knows nothing of the API, the store or the replicas: who may use the
// relay comes through Keys (the coordinator satisfies it), and which relays
// to mesh with through SetMeshPeers, so that any server that runs a relay
// region (a replica of the control plane, or one without a database that
// learns both from another server) can assemble one from the same parts.
// The DERP map that advertises a region to peers is package derpmap's.
//
// # Admission
//
// A DERP relay forwards packets between any two clients that connect to
// it, and a client names itself by nothing but a key it made up; left
// open, the relay carries anyone's traffic on the server's bandwidth. So
// the relay admits a client only if its key is the tunnel key of a peer of
// the deployment (Keys.KnowsNodeKey: an agent, a user's CLI, one of the
// server's own tunnels, on this server or another), and closes the
// connection of a client whose key has been unknown for a while (see
// warden.go). Other relays of the deployment, and tools of our own,
// connect with the deployment's mesh key, which the relay trusts without
// asking, as Tailscale's derper does for the nodes of one region.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"tailscale.com/derp/derpserver"
	"tailscale.com/envknob"
	"tailscale.com/types/key"
)

// Keys is what the relay asks about a client's key: whether it belongs to
// a peer of the deployment.
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

// Options configure a DERP relay.
type Options struct {
	// Logger receives the relay's events: refused clients (a summary at
	// most once a minute), closed connections, mesh links; the library's
	// own lines at debug level. Nil discards.
	Logger *slog.Logger
	// Keys decides which clients the relay admits besides those with the
	// mesh key. Required.
	Keys Keys
	// MeshKey is the deployment's DERP mesh key, 64 hex characters, shared
	// by every relay that meshes with this one. Empty means a random key:
	// the relay then meshes with no other, and only this process holds
	// its key (the warden and the health check need one).
	MeshKey string
	// AdmitWait bounds how long an admission waits for an unknown key to
	// become known. Zero means DefaultAdmitWait.
	AdmitWait time.Duration
	// Grace is how long a connected client's key may stay unknown before
	// the relay closes its connection. Zero means DefaultGrace.
	Grace time.Duration
}

// DERP is the built-in DERP relay: the library's relay server behind its
// HTTP handler (DERP's own upgrade, and WebSocket), with its admission
// controller, its warden and its mesh links. Create it with NewDERP, serve
// Handler at /derp, and Close it.
type DERP struct {
	server    *derpserver.Server
	handler   http.Handler
	logger    *slog.Logger
	admission *admission
	mesh      *mesh

	ctx       context.Context // ends with Close; the warden's lifetime
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewDERP starts a relay that admits the clients opts.Keys knows and those
// with the mesh key. It serves nothing until its Handler is mounted.
//
// It raises the library's per-client send queue (see queueDepth) through
// a process-wide knob, unless the environment already sets it.
func NewDERP(opts Options) (*DERP, error) {
	if opts.Keys == nil {
		return nil, errors.New("relay: Options.Keys is required")
	}
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
	meshKey := opts.MeshKey
	if meshKey == "" {
		meshKey = randomHex()
	}

	setQueueDepth()
	srv := derpserver.New(key.NewNode(), func(format string, args ...any) {
		logger.Debug(fmt.Sprintf(format, args...))
	})
	if err := srv.SetMeshKey(meshKey); err != nil {
		srv.Close()
		return nil, fmt.Errorf("relay mesh key: %w", err)
	}
	adm, err := startAdmission(srv, opts.Keys, opts.AdmitWait, logger)
	if err != nil {
		srv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DERP{
		server:    srv,
		handler:   derpserver.AddWebSocketSupport(srv, derpserver.Handler(srv)),
		logger:    logger,
		admission: adm,
		mesh:      newMesh(srv, logger.With(slog.String("component", "mesh"))),
		ctx:       ctx,
		cancel:    cancel,
	}
	w := &warden{derp: srv, keys: opts.Keys, grace: opts.Grace, logger: logger}
	d.wg.Go(func() { w.run(ctx) })
	return d, nil
}

// Handler serves the relay: mount it at /derp. It takes DERP's own
// upgrade and WebSockets (subprotocol "derp"), both of which hijack an
// HTTP/1.1 connection: the server must not speak HTTP/2 on its listener.
func (d *DERP) Handler() http.Handler { return d.handler }

// MeshKey is the key with which the relay trusts a client whatever its
// node key: Options.MeshKey, or the random key made for this relay.
func (d *DERP) MeshKey() key.DERPMesh { return d.server.MeshKey() }

// SetMeshPeers makes the relay mesh with exactly these other relays (see
// mesh.go). It may be called at any time, also after Close (it then does
// nothing).
func (d *DERP) SetMeshPeers(peers []MeshPeer) { d.mesh.set(peers) }

// Close drops the mesh links, stops the warden and the admission
// controller, and closes the relay and every client connection. Calling it
// again does nothing.
func (d *DERP) Close() {
	d.closeOnce.Do(func() {
		d.mesh.close()
		d.cancel()
		d.wg.Wait()
		// The relay refuses every client from here on: it gets no answer.
		d.admission.close()
		d.server.Close()
	})
}

// queueDepthKnob sets how many packets the relay queues for each client
// before dropping; derpserver reads it once, in New.
const queueDepthKnob = "TS_DEBUG_DERP_PER_CLIENT_SEND_QUEUE_DEPTH"

// queueDepth replaces the library's default of 32 packets. A bulk
// transfer through the relay overflows 32 (measured: ~0.5% of its packets
// dropped at the head of the queue, none at 256), and the tunnel's
// userspace TCP loses most of its speed to even that much loss. 512 packets
// of at most ~1.4 KB are ~700 KB per client, held only while that client
// reads slower than its peers send.
const queueDepth = 512

// setQueueDepth raises the relay's per-client queue unless the operator
// chose a depth in the environment. The knob is process-wide, and only
// derpserver reads it.
func setQueueDepth() {
	if _, ok := os.LookupEnv(queueDepthKnob); !ok {
		envknob.Setenv(queueDepthKnob, strconv.Itoa(queueDepth))
	}
}

// randomHex returns 32 random bytes in hex.
func randomHex() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
