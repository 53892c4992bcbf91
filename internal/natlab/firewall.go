package natlab

import (
	"fmt"
	"strconv"
	"strings"
)

// The whole ruleset of a site lives in one table that applyFirewall
// replaces in a single nft transaction, so a change at run time (loss,
// blocking UDP) never leaves a window with no rules. Conntrack entries, and
// so the NAT mappings in them, live in the kernel independently of the
// table and survive the replacement, as they would on a real router whose
// rules change.
const fwTable = "natlab"

// applyFirewallLocked renders the site's ruleset from its current settings
// and loads it. s.mu must be held, which also keeps concurrent changes from
// loading out of order.
func (s *site) applyFirewallLocked() error {
	rules := s.rulesetLocked()
	if _, err := run(&rules, "ip", "netns", "exec", s.fwNS, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("load firewall: %w", err)
	}
	return nil
}

// rulesetLocked returns the nft script for the site. s.mu must be held.
func (s *site) rulesetLocked() string {
	// Drops that model the link (loss) or a policy (no UDP) come first, so
	// they hit established flows too: blocking UDP mid-transfer must stop
	// the transfer.
	var drops []string
	if s.loss > 0 {
		drops = append(drops, "numgen random mod 1000 < "+strconv.Itoa(s.loss)+" counter drop")
	}
	if s.blockUDP || s.kind == UDPBlocked {
		drops = append(drops, "meta l4proto udp counter drop")
	}

	var b strings.Builder
	// Creating the table first makes the delete valid on the first load.
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\ntable ip %s {\n", fwTable, fwTable, fwTable)
	if s.kind == Public {
		// No firewall in front of a public host, only the link's drops,
		// on each packet it sends or receives (loopback excepted).
		chain(&b, "input", "type filter hook input priority filter; policy accept;", append([]string{`iif "lo" accept`}, drops...))
		chain(&b, "output", "type filter hook output priority filter; policy accept;", append([]string{`oif "lo" accept`}, drops...))
	} else {
		masq := `oifname "wan0" masquerade`
		if s.kind == HardNAT {
			// A random port for every new flow: endpoint-dependent mapping.
			masq += " random"
		}
		// Plain masquerade keeps the source port when it is free, which
		// gives endpoint-independent mapping.
		chain(&b, "postrouting", "type nat hook postrouting priority srcnat; policy accept;", []string{masq})
		chain(&b, "forward", "type filter hook forward priority filter; policy drop;", append(drops,
			"ct state established,related accept",
			`iifname "lan0" oifname "wan0" accept`,
		))
		// Unsolicited packets to the router itself are dropped, as home
		// routers do. Besides realism this is what makes easy↔easy hole
		// punching work: a packet that is dropped here leaves no conntrack
		// entry, whereas an accepted one would hold the very port the
		// router's own outbound mapping is about to want (see the package
		// comment).
		chain(&b, "input", "type filter hook input priority filter; policy drop;", []string{
			`iif "lo" accept`,
			"ct state established,related accept",
			`iifname "lan0" accept`,
		})
	}
	b.WriteString("}\n")
	return b.String()
}

func chain(b *strings.Builder, name, hook string, rules []string) {
	fmt.Fprintf(b, "\tchain %s {\n\t\t%s\n", name, hook)
	for _, r := range rules {
		fmt.Fprintf(b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
}

// setLoss and setBlockUDP change a setting and reload the firewall.
func (s *site) setLoss(permille int) error {
	if permille < 0 || permille > 1000 {
		return fmt.Errorf("loss %d‰ out of range 0..1000", permille)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loss = permille
	return s.applyFirewallLocked()
}

func (s *site) setBlockUDP(block bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blockUDP = block
	return s.applyFirewallLocked()
}

// loadFirewall loads the ruleset for the site's current settings.
func (s *site) loadFirewall() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyFirewallLocked()
}
