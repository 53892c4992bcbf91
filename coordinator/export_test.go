package coordinator

import (
	"fmt"

	"tailscale.com/types/key"
)

// CheckNodeKeys compares the key index with the keys of the nodes in the
// graph, counted afresh, and says how they differ.
func (c *Coordinator) CheckNodeKeys() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := make(map[key.NodePublic]int)
	for _, a := range c.g.agents {
		if a.node != nil {
			want[a.node.Key]++
		}
		for _, cl := range a.clients {
			if cl.node != nil {
				want[cl.node.Key]++
			}
		}
		for _, rc := range a.remoteClients {
			if rc.node != nil {
				want[rc.node.Key]++
			}
		}
	}
	for _, rl := range c.g.relays {
		if rl.node != nil {
			want[rl.node.Key]++
		}
	}
	for k, n := range want {
		if got := c.g.keys.count[k]; got != n {
			return fmt.Errorf("key %s: index counts %d nodes, the graph has %d", k.ShortString(), got, n)
		}
	}
	for k, n := range c.g.keys.count {
		if want[k] == 0 {
			return fmt.Errorf("key %s: index counts %d nodes, the graph has none", k.ShortString(), n)
		}
	}
	return nil
}

// KeyWaiters returns how many keys have callers waiting in AwaitNodeKey.
func (c *Coordinator) KeyWaiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.g.keys.waiters)
}
