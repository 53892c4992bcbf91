package tunnel

import (
	"tailscale.com/tailcfg"
)

// SetDERPMap replaces the relays (and STUN servers) the Conn uses, for
// instance when a workspace proxy adds its region.
func (c *Conn) SetDERPMap(dm *tailcfg.DERPMap) {
	if dm == nil {
		return
	}
	dm = dm.Clone()
	c.mu.Lock()
	c.derpMap = dm
	_, homeKept := dm.Regions[c.homeDERP]
	c.mu.Unlock()
	c.magic.SetDERPMap(c.relays.Map(dm))
	if !homeKept {
		c.setProvisionalHome(dm)
	}
	c.pokeNode()
}

// reapplyDERPMap hands magicsock the map again when package derpws changes
// how a relay is reached (an HTTPS relay reached over WebSocket is pinned to
// its local bridge). magicsock reconnects the changed regions and forgets
// its home if that was one of them, so put the home back.
func (c *Conn) reapplyDERPMap() {
	c.mu.Lock()
	dm, home := c.derpMap, c.homeDERP
	c.mu.Unlock()
	c.magic.SetDERPMap(c.relays.Map(dm))
	if home != 0 {
		c.magic.ForceSetNearestDERP(home)
	}
}

// setProvisionalHome picks a home DERP region at once when waiting for the
// network check would only delay the first connection. magicsock picks its
// home after a netcheck, and a netcheck without STUN answers takes 3 s (the
// STUN timeout) before it falls back to HTTPS latency. Peers cannot send us
// relayed packets before we publish a home, so that is 3 s added to every
// cold start of a deployment without STUN. The netcheck's result still
// moves the home later if another region is closer.
func (c *Conn) setProvisionalHome(dm *tailcfg.DERPMap) {
	region := provisionalHome(dm)
	if region == 0 {
		return
	}
	got := c.magic.ForceSetNearestDERP(region)
	c.mu.Lock()
	if c.homeDERP == 0 || c.derpMap.Regions[c.homeDERP] == nil {
		c.homeDERP = got
	}
	c.mu.Unlock()
}

// provisionalHome returns the region to use before any netcheck, or 0 to
// wait for one: the only region there is, or, when no node offers STUN (so
// the netcheck will be slow), the lowest region ID that may be a home.
func provisionalHome(dm *tailcfg.DERPMap) int {
	var candidates []int
	stun := false
	for _, id := range dm.RegionIDs() {
		r := dm.Regions[id]
		if r == nil || r.Avoid || r.NoMeasureNoHome {
			continue
		}
		derp := false
		for _, n := range r.Nodes {
			if n.STUNPort >= 0 {
				stun = true
			}
			if !n.STUNOnly {
				derp = true
			}
		}
		if derp {
			candidates = append(candidates, id)
		}
	}
	switch {
	case len(candidates) == 0:
		return 0
	case len(candidates) == 1 || !stun:
		return candidates[0]
	}
	return 0
}
