package tunnel

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"tailscale.com/net/netmon"
	"tailscale.com/tailcfg"
	"tailscale.com/wgengine"
	"tailscale.com/wgengine/router"

	"github.com/tetherdev/tether"
)

// nodeSettle is how long the node loop waits after a change before it
// reports the node, so that a burst of changes (a netcheck finishing, both
// sockets binding) makes one callback.
const nodeSettle = 10 * time.Millisecond

// SetNodeCallback sets the function that receives our node whenever it
// changes: keys, home DERP region or endpoints (latency alone does not
// count). It also receives the current node right away if that is ready.
// Calls come from one goroutine, in order; fn must not block for long, and
// must not call Close (which waits for it).
func (c *Conn) SetNodeCallback(fn func(*tether.Node)) {
	c.mu.Lock()
	c.nodeCB = fn
	c.resendNode = true
	c.mu.Unlock()
	c.pokeNode()
}

// Node returns our current node, or nil while it is not ready (before the
// home DERP region is chosen).
func (c *Conn) Node() *tether.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodeLocked()
}

// nodeLocked builds our node from what magicsock has told us. c.mu must be
// held.
func (c *Conn) nodeLocked() *tether.Node {
	// Without a home region peers cannot send us relayed packets, and
	// anything they send first is lost, so a node is not worth publishing
	// until it has one (unless there are no relays at all).
	if c.homeDERP == 0 && len(c.derpMap.Regions) > 0 {
		return nil
	}
	n := &tether.Node{
		Key:           c.key.Public(),
		DiscoKey:      c.magic.DiscoPublicKey(),
		Addresses:     []netip.Prefix{c.prefix},
		PreferredDERP: c.homeDERP,
		DERPLatency:   maps.Clone(c.derpLatency),
		AsOf:          time.Now(),
	}
	if !c.blockEndpoints {
		eps := append(slices.Clone(c.magicEndpoints), c.localEndpoints...)
		slices.SortFunc(eps, netip.AddrPort.Compare)
		eps = slices.Compact(eps)
		if len(eps) > tether.MaxNodeEndpoints {
			eps = eps[:tether.MaxNodeEndpoints]
		}
		n.Endpoints = eps
	}
	return n
}

// pokeNode tells the node loop that our node may have changed.
func (c *Conn) pokeNode() { c.nodeDirty.Put(struct{}{}) }

func (c *Conn) nodeLoop() {
	defer c.wg.Done()
	settle := time.NewTimer(0)
	<-settle.C
	for {
		select {
		case <-c.closed:
			return
		case <-c.nodeDirty.Changed():
		}
		settle.Reset(nodeSettle)
		select {
		case <-c.closed:
			settle.Stop()
			return
		case <-settle.C:
		}
		c.mu.Lock()
		n := c.nodeLocked()
		send := n != nil && (c.resendNode || !sameNode(n, c.sentNode))
		cb := c.nodeCB
		if send {
			c.sentNode = n
			c.resendNode = false
		}
		renew := c.renewPeers
		c.renewPeers = false
		c.mu.Unlock()
		if renew {
			c.renewRelayedPeers()
		}
		if send && cb != nil {
			c.logger.Debug("node changed", "derp", n.PreferredDERP, "endpoints", n.Endpoints)
			cb(cloneNode(n))
		}
	}
}

// sameNode reports whether a and b are equal for peers; the latency and
// timestamp change all the time without affecting reachability.
func sameNode(a, b *tether.Node) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Key == b.Key &&
		a.DiscoKey == b.DiscoKey &&
		a.PreferredDERP == b.PreferredDERP &&
		slices.Equal(a.Addresses, b.Addresses) &&
		slices.Equal(a.Endpoints, b.Endpoints)
}

// onNetInfo receives magicsock's view of the network after each netcheck:
// the home DERP region and the latency to each region.
func (c *Conn) onNetInfo(ni *tailcfg.NetInfo) {
	lat := make(map[string]float64)
	for k, v := range ni.DERPLatency {
		// Keys are "<region>-v4" and "<region>-v6"; peers care about the
		// region, so keep the better family.
		region, _, _ := strings.Cut(k, "-")
		if _, err := strconv.Atoi(region); err != nil {
			continue
		}
		if old, ok := lat[region]; !ok || v < old {
			lat[region] = v
		}
	}
	if len(lat) > tether.MaxNodeDERPRegions {
		// The coordinator refuses bigger nodes; keep the closest regions.
		regions := slices.Collect(maps.Keys(lat))
		slices.SortFunc(regions, func(a, b string) int { return cmp.Compare(lat[a], lat[b]) })
		for _, r := range regions[tether.MaxNodeDERPRegions:] {
			delete(lat, r)
		}
	}
	c.mu.Lock()
	c.homeDERP = ni.PreferredDERP
	c.derpLatency = lat
	c.mu.Unlock()
	c.pokeNode()
}

// onEngineStatus receives magicsock's endpoints (STUN results and local
// interfaces) whenever they change.
func (c *Conn) onEngineStatus(s *wgengine.Status, err error) {
	if err != nil {
		return
	}
	eps := make([]netip.AddrPort, 0, len(s.LocalAddrs))
	for _, ep := range s.LocalAddrs {
		eps = append(eps, ep.Addr)
	}
	c.mu.Lock()
	c.magicEndpoints = eps
	c.mu.Unlock()
	c.pokeNode()
}

// onPortUpdate learns magicsock's UDP ports. magicsock itself reports local
// endpoints only after a netcheck, which waits seconds for STUN answers that
// never come when STUN is disabled or UDP is blocked; peers on the same
// network should not wait for that.
func (c *Conn) onPortUpdate(pu router.PortUpdate) {
	ignorePathMTU(pu.EndpointNetwork, pu.UDPPort)
	c.mu.Lock()
	switch pu.EndpointNetwork {
	case "udp4":
		// Every bind publishes: a second one is a rebind, after which
		// the node loop renews the peers (renewRelayedPeers).
		c.renewPeers = c.renewPeers || c.bound4
		c.bound4 = true
		c.port4 = pu.UDPPort
	case "udp6":
		c.port6 = pu.UDPPort
	}
	c.localEndpoints = localEndpoints(c.port4, c.port6)
	c.mu.Unlock()
	c.pokeNode()
}

// localEndpoints pairs the machine's interface addresses with our ports, as
// magicsock does: loopback addresses only when there is nothing else.
func localEndpoints(port4, port6 uint16) []netip.AddrPort {
	regular, loopback, err := netmon.LocalAddresses()
	if err != nil {
		return nil
	}
	if len(regular) == 0 {
		regular = loopback
	}
	var eps []netip.AddrPort
	for _, ip := range regular {
		switch {
		case ip.Is4() && port4 != 0:
			eps = append(eps, netip.AddrPortFrom(ip, port4))
		case ip.Is6() && port6 != 0:
			eps = append(eps, netip.AddrPortFrom(ip, port6))
		}
	}
	return eps
}
