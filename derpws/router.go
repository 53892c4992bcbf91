package derpws

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"tailscale.com/envknob"
	"tailscale.com/feature"
	"tailscale.com/tailcfg"
)

// process is the router behind the library's relay-proxy hook. It is the
// package's only global, because the hook it serves is process-wide and can
// be set only once.
var process router

// Timing of the decision to probe.
const (
	// retryWindow is how far back the hook counts dials of a host. The
	// library retries a failed relay connection after 10 ms, growing to at
	// most 7.5 s, so failing dials always fall within it; a healthy relay
	// is dialed once.
	retryWindow = 10 * time.Second
	// minProbeInterval spaces probes of one host while dials keep failing.
	minProbeInterval = 3 * time.Second
)

// plainHTTPKnob is the library's process-wide switch to plain-HTTP relays
// (see tunnel.Options.DERPPlainHTTP); the client reads it at every dial.
const plainHTTPKnob = "TS_DEBUG_USE_DERP_HTTP"

// router decides, per relay, whether the library's client dials it as usual
// or through the bridge.
type router struct {
	installOnce sync.Once
	hookOK      bool // the hook is ours; set once, before any Relays exists

	mu    sync.Mutex
	users map[*Relays]struct{}
	st    *state // nil while no Relays is registered
}

// state is what the router knows while at least one Relays is registered.
// Teardown detaches it from the router before waiting for its goroutines,
// so a late probe result only updates a forgotten state.
type state struct {
	mu     *sync.Mutex // the router's; guards the maps and bridge below
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // probes and OnChange deliveries

	relays map[string]*relay     // by dial key (host:port)
	hosts  map[string]*hostDials // by node HostName
	certs  map[string]*localCert // by node HostName, for the bridge's TLS
	bridge *bridge               // nil until a relay uses WebSocket
	logger *slog.Logger          // of the latest registration
}

// relay is one DERP node as the library's client dials it.
type relay struct {
	info   relayInfo
	ws     bool // carried over WebSocket
	forced bool
	logger *slog.Logger
	users  map[*Relays]struct{}
}

// relayInfo is what a probe or the bridge needs of a relay. It is
// replaced, never modified, so it may be read without the lock.
type relayInfo struct {
	key   string            // host:port that the client sends CONNECT for
	node  *tailcfg.DERPNode // the operator's node, unchanged
	https bool
}

// hostDials counts the dials of one host name, which is all the hook learns
// of a dial: it names no port.
type hostDials struct {
	dials     []time.Time
	probing   bool
	lastProbe time.Time
}

// install sets the library's hooks. The proxy hook panics if set twice, so
// this runs once; if another package (feature/useproxy) took it first, the
// fallback stays off and every relay is dialed as before.
func (r *router) install(log *slog.Logger) {
	r.installOnce.Do(func() {
		if feature.HookProxyFromEnvironment.IsSet() {
			log.Warn("the relay proxy hook is taken by another package: DERP over WebSocket is unavailable")
			return
		}
		feature.HookProxyFromEnvironment.Set(r.proxyFor)
		if !feature.HookProxyGetAuthHeader.IsSet() {
			feature.HookProxyGetAuthHeader.Set(basicAuthHeader)
		}
		r.hookOK = true
	})
}

// basicAuthHeader gives the client's CONNECT the credentials in a proxy
// URL: the bridge's, or those in HTTPS_PROXY.
func basicAuthHeader(u *url.URL) (string, error) {
	pass, ok := u.User.Password()
	if u.User.Username() == "" || !ok {
		return "", nil
	}
	req := &http.Request{Header: http.Header{}}
	req.SetBasicAuth(u.User.Username(), pass)
	return req.Header.Get("Authorization"), nil
}

func (r *router) add(h *Relays) {
	r.install(h.logger)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users == nil {
		r.users = make(map[*Relays]struct{})
	}
	r.users[h] = struct{}{}
	if r.st == nil {
		ctx, cancel := context.WithCancel(context.Background())
		r.st = &state{
			mu:     &r.mu,
			ctx:    ctx,
			cancel: cancel,
			relays: make(map[string]*relay),
			hosts:  make(map[string]*hostDials),
			certs:  make(map[string]*localCert),
		}
	}
	r.st.logger = h.logger
}

func (r *router) remove(h *Relays) {
	r.mu.Lock()
	st := r.st
	if _, ok := r.users[h]; !ok || st == nil {
		r.mu.Unlock()
		return
	}
	delete(r.users, h)
	h.mu.Lock()
	keys := h.keys
	h.keys = nil
	h.mu.Unlock()
	for _, k := range keys {
		st.dropUserLocked(k, h)
	}
	if len(r.users) > 0 {
		r.mu.Unlock()
		return
	}
	r.st = nil
	r.mu.Unlock()
	st.stop()
}

// stop ends the state's probes, deliveries and bridge. The probes end
// first (their context is canceled), so none can start a bridge after it.
func (st *state) stop() {
	st.cancel()
	st.wg.Wait()
	st.mu.Lock()
	b := st.bridge
	st.bridge = nil
	st.mu.Unlock()
	if b != nil {
		b.close()
	}
}

// dialKey is the host:port the library's client sends CONNECT for: the
// node's DERPPort, else 443, or 3340 over plain HTTP (derphttp's choice).
func dialKey(n *tailcfg.DERPNode, https bool) string {
	port := n.DERPPort
	if port == 0 {
		port = 443
		if !https {
			port = 3340
		}
	}
	return net.JoinHostPort(n.HostName, strconv.Itoa(port))
}

// setMap registers dm's relays for h and returns the map for magicsock.
func (r *router) setMap(h *Relays, dm *tailcfg.DERPMap) *tailcfg.DERPMap {
	https := !envknob.Bool(plainHTTPKnob)
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if st == nil || closed || !r.hookOK {
		return dm
	}
	keys := make(map[string]bool)
	for _, reg := range dm.Regions {
		if reg == nil {
			continue
		}
		for _, n := range reg.Nodes {
			if n == nil || n.STUNOnly || n.HostName == "" {
				continue
			}
			key := dialKey(n, https)
			keys[key] = true
			rl := st.relays[key]
			if rl == nil {
				rl = &relay{users: make(map[*Relays]struct{})}
				st.relays[key] = rl
				if st.hosts[n.HostName] == nil {
					st.hosts[n.HostName] = &hostDials{}
				}
			}
			rl.info = relayInfo{key: key, node: n.Clone(), https: https}
			rl.logger = h.logger
			rl.users[h] = struct{}{}
			if h.force && !rl.forced {
				rl.forced = true
				if !rl.ws {
					rl.ws = true
					h.logger.Info("reaching DERP relay over WebSocket, as the server requires", "relay", key)
				}
			}
		}
	}
	h.mu.Lock()
	old := h.keys
	h.keys = h.keys[:0:0]
	for k := range keys {
		h.keys = append(h.keys, k)
	}
	h.mu.Unlock()
	for _, k := range old {
		if !keys[k] {
			st.dropUserLocked(k, h)
		}
	}
	st.ensureBridgeLocked()
	return st.pinnedLocked(dm, https)
}

// dropUserLocked forgets that h dials the relay at key, and the relay
// when nobody does.
func (st *state) dropUserLocked(key string, h *Relays) {
	rl := st.relays[key]
	if rl == nil {
		return
	}
	delete(rl.users, h)
	if len(rl.users) > 0 {
		return
	}
	delete(st.relays, key)
	host := rl.info.node.HostName
	for _, other := range st.relays {
		if other.info.node.HostName == host {
			return
		}
	}
	delete(st.hosts, host)
}

// ensureBridgeLocked starts the bridge once a relay uses WebSocket.
func (st *state) ensureBridgeLocked() {
	if st.bridge != nil || st.ctx.Err() != nil {
		return
	}
	need := false
	for _, rl := range st.relays {
		need = need || rl.ws
	}
	if !need {
		return
	}
	b, err := startBridge(st.ctx, st.lookup, st.logger)
	if err != nil {
		st.logger.Error("cannot carry DERP over WebSocket", "err", err)
		return
	}
	st.bridge = b
}

// pinnedLocked returns dm, or a copy whose HTTPS nodes that use WebSocket
// accept only the bridge's certificate for their host.
func (st *state) pinnedLocked(dm *tailcfg.DERPMap, https bool) *tailcfg.DERPMap {
	if !https || st.bridge == nil {
		return dm
	}
	var out *tailcfg.DERPMap
	for id, reg := range dm.Regions {
		if reg == nil {
			continue
		}
		for i, n := range reg.Nodes {
			if n == nil || n.STUNOnly {
				continue
			}
			rl := st.relays[dialKey(n, https)]
			if rl == nil || !rl.ws {
				continue
			}
			cert, err := st.certLocked(n.HostName)
			if err != nil {
				st.logger.Error("cannot make the WebSocket bridge's certificate", "host", n.HostName, "err", err)
				continue
			}
			if out == nil {
				out = dm.Clone()
			}
			pinned := out.Regions[id].Nodes[i]
			pinned.CertName = cert.pin
			pinned.InsecureForTests = false
		}
	}
	if out == nil {
		return dm
	}
	return out
}

func (st *state) certLocked(host string) (*localCert, error) {
	if c := st.certs[host]; c != nil {
		return c, nil
	}
	c, err := newLocalCert(host)
	if err != nil {
		return nil, err
	}
	st.certs[host] = c
	return c, nil
}

// lookup is the bridge's view of a relay it is asked to CONNECT to.
func (st *state) lookup(key string) (info relayInfo, ws bool, cert *localCert, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	rl := st.relays[key]
	if rl == nil {
		return relayInfo{}, false, nil, false
	}
	if rl.ws && rl.info.https {
		cert = st.certs[rl.info.node.HostName]
	}
	return rl.info, rl.ws, cert, true
}

// proxyFor is the library's HookProxyFromEnvironment: the bridge for a host
// with a relay that uses WebSocket, else the user's proxy settings.
func (r *router) proxyFor(req *http.Request) (*url.URL, error) {
	var u *url.URL
	r.mu.Lock()
	if st := r.st; st != nil {
		u = st.routeLocked(req.URL.Hostname(), time.Now())
	}
	r.mu.Unlock()
	if u != nil {
		return u, nil
	}
	return http.ProxyFromEnvironment(req)
}

// routeLocked counts a dial of host, starts a probe when the dials look
// like retries, and returns the bridge's URL if a relay on host uses it.
func (st *state) routeLocked(host string, now time.Time) *url.URL {
	hd := st.hosts[host]
	if hd == nil {
		return nil
	}
	var mine []*relay
	ws, probeable := false, false
	for _, rl := range st.relays {
		if rl.info.node.HostName == host {
			mine = append(mine, rl)
			ws = ws || rl.ws
			probeable = probeable || !rl.forced
		}
	}
	kept := hd.dials[:0]
	for _, t := range hd.dials {
		if now.Sub(t) < retryWindow {
			kept = append(kept, t)
		}
	}
	hd.dials = append(kept, now)
	if probeable && len(hd.dials) > len(mine) && !hd.probing && now.Sub(hd.lastProbe) >= minProbeInterval {
		hd.probing = true
		infos := make([]relayInfo, 0, len(mine))
		for _, rl := range mine {
			if !rl.forced {
				infos = append(infos, rl.info)
			}
		}
		st.wg.Add(1)
		go st.probeHost(host, infos)
	}
	if ws && st.bridge != nil {
		return st.bridge.url
	}
	return nil
}

// probeHost probes the relays on host and switches those whose verdict
// differs from how they are dialed now.
func (st *state) probeHost(host string, infos []relayInfo) {
	defer st.wg.Done()
	verdicts := make([]probeResult, len(infos))
	for i, info := range infos {
		verdicts[i] = probe(st.ctx, info)
	}
	var notify map[*Relays]struct{}
	st.mu.Lock()
	if hd := st.hosts[host]; hd != nil {
		hd.probing = false
		hd.lastProbe = time.Now()
	}
	for i, info := range infos {
		rl := st.relays[info.key]
		v := verdicts[i]
		if rl == nil || rl.forced {
			continue
		}
		switch {
		case v.verdict == useWebSocket && !rl.ws:
			rl.ws = true
			rl.logger.Info("DERP relay refuses its upgrade but accepts WebSocket: reaching it over WebSocket", "relay", info.key, "refusal", v.detail)
		case v.verdict == plainDERP && rl.ws:
			rl.ws = false
			rl.logger.Info("DERP relay accepts its upgrade again: leaving WebSocket", "relay", info.key)
		default:
			rl.logger.Debug("DERP relay probed", "relay", info.key, "verdict", v.verdict.String(), "detail", v.detail)
			continue
		}
		if info.https {
			for h := range rl.users {
				if notify == nil {
					notify = make(map[*Relays]struct{})
				}
				notify[h] = struct{}{}
			}
		}
	}
	st.ensureBridgeLocked()
	for h := range notify {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			h.notify()
		}()
	}
	st.mu.Unlock()
}
