// Package derpws carries a process's DERP relay connections over WebSocket
// when something between the process and a relay refuses DERP's own HTTP
// upgrade, and always when the deployment asks for it
// (--derp-force-websockets).
//
// A DERP client opens a relay connection with "GET /derp" and "Upgrade:
// DERP". Reverse proxies and corporate proxies that know WebSocket often
// pass "Upgrade: websocket" and nothing else; the relay then answers 426
// and the connection fails. Tailscale's relay server also accepts the DERP
// framing inside a WebSocket (subprotocol "derp"), but tailscale.com's
// client only dials that in builds with the ts_debug_websockets tag, and
// never falls back to it by itself.
//
// # How connections are rerouted
//
// Before it dials a relay, the library's client (derphttp) asks the
// process-wide hook feature.HookProxyFromEnvironment for an HTTP proxy, and
// if it gets one it tunnels through it with CONNECT. This package sets that
// hook. For a relay that must use WebSocket, the hook names a CONNECT
// endpoint that the package serves on loopback, inside the process (the
// bridge). The bridge accepts the CONNECT, then plays the relay's part in
// the client's handshake:
//
//   - over HTTPS it terminates the client's TLS with a certificate of its
//     own, which the client accepts because Map pins that relay's node to
//     it (DERPNode.CertName "sha256-raw:…"); the client finds no DERP meta
//     certificate in it, so it sends a normal upgrade, not a fast start;
//   - it reads the client's "Upgrade: DERP" request, dials the real relay's
//     /derp over WebSocket (ws:// or wss://, verified as the client would:
//     the node's own CertName or InsecureForTests, else the system roots),
//     answers "101 Switching Protocols" (not when the client asked for a
//     fast start), and from then on copies bytes: the DERP framing, server
//     key frame first, flows unchanged inside the WebSocket's binary
//     messages, and the relay's end-to-end checks (its key, the client's
//     sealed hello) happen between the library's client and the relay.
//
// The hook learns a relay's host name, not its port, so the bridge also
// receives the dials of other relays on the same host; it passes those
// through untouched.
//
// Other requests the library sends a relay through the hook (netcheck's
// HTTPS latency check) are forwarded to the relay over plain HTTP(S). Every
// other dial keeps the user's proxy settings: the hook returns what
// http.ProxyFromEnvironment says (HTTPS_PROXY, NO_PROXY), as
// feature/useproxy would; that package cannot be linked alongside this one,
// since the hook can be set only once.
//
// # When WebSocket is used
//
//   - Forced (Options.Force): from the first connection, without a probe.
//   - Otherwise each relay starts on plain DERP, which costs nothing where
//     it works (probing every relay before the engine starts would delay
//     every tunnel by a round trip to each relay, to help the few behind
//     such proxies). The hook sees every dial; when a relay host is dialed more
//     often than its relays would need (a connection failed and the client
//     is retrying: its backoff starts at 10 ms), the package probes each
//     relay on that host in the background: a real "Upgrade: DERP" request,
//     and when that is answered with anything but 101, a WebSocket
//     handshake. A relay whose plain upgrade is refused and whose WebSocket
//     is accepted switches to WebSocket; the client's next retry goes
//     through the bridge. Probes repeat, at most every few seconds, while
//     dials keep failing. A relay stays on WebSocket while that works; if
//     its WebSocket dials fail in turn, the probes run again and move it
//     back to plain DERP if that is answered now.
//
// Switching an HTTPS relay changes its node in Map's result (the pin), so
// the package calls Options.OnChange and the caller hands magicsock the new
// map, which reconnects that region.
//
// The hook and the bridge serve the whole process, because the library's
// hook is process-wide: every Relays registered in a process shares them.
// The bridge runs only while some relay uses WebSocket and stops when the
// last Relays is closed.
package derpws

import (
	"log/slog"
	"sync"

	"tailscale.com/tailcfg"
)

// Options configure a Relays.
type Options struct {
	// Logger receives what the package decides (Info: a relay switches
	// transport) and why connections fail (Debug). Nil discards.
	Logger *slog.Logger
	// Force carries every relay over WebSocket from the first connection
	// (ConnectionInfo.DERPForceWebSockets).
	Force bool
	// OnChange is called, from a goroutine of the package, when Map would
	// return a different map than before for the same input: the caller
	// should hand magicsock Map's new result. It is never called after
	// Close returns. Nil means the caller never re-reads Map; then an HTTPS
	// relay can switch to WebSocket only if forced.
	OnChange func()
}

// Relays is one user's registration of the relays it dials: typically one
// per tunnel. Its methods are safe for concurrent use.
type Relays struct {
	r        *router
	logger   *slog.Logger
	force    bool
	onChange func()

	mu       sync.Mutex
	closed   bool
	keys     []string       // relays the last Map registered
	inflight sync.WaitGroup // OnChange calls in progress
}

// Register starts routing the relays that Map will be given. Close the
// result when the relays are no longer dialed.
func Register(opts Options) *Relays {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Relays{r: &process, logger: log, force: opts.Force, onChange: opts.OnChange}
	h.r.add(h)
	return h
}

// Map registers the relays of dm for this Relays (replacing what an earlier
// Map registered) and returns the map to hand magicsock: dm itself, or a
// copy in which the HTTPS relays that use WebSocket are pinned to the
// bridge's certificate. dm is not modified.
func (h *Relays) Map(dm *tailcfg.DERPMap) *tailcfg.DERPMap {
	if dm == nil {
		return nil
	}
	return h.r.setMap(h, dm)
}

// Close unregisters the relays. When it is the process's last Relays, it
// stops the bridge (ending the connections it carries) and forgets every
// relay's state. It waits for OnChange calls in progress.
func (h *Relays) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	h.inflight.Wait()
	h.r.remove(h)
}

// notify calls OnChange unless the Relays is closed.
func (h *Relays) notify() {
	if h.onChange == nil {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.inflight.Add(1)
	h.mu.Unlock()
	defer h.inflight.Done()
	h.onChange()
}
