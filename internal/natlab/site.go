package natlab

import (
	"fmt"
	"net/netip"
	"strconv"
	"sync"
)

// A site is what AddHost builds: a Public host alone on its link to the
// internet, or a router with a LAN of one or more hosts.
type site struct {
	lab      *Lab
	index    int // n in 198.18.n.0/24 and 10.0.n.0/24
	kind     RouterKind
	mtu      int
	wan      netip.Addr // the router's (or Public host's) address
	upstream netip.Addr // the internet router's address on this link
	fwNS     string     // namespace holding the firewall: router or Public host

	mu       sync.Mutex
	lanHosts int  // hosts on the LAN so far
	loss     int  // per mille
	blockUDP bool // set by BlockUDP, on top of what kind blocks
}

func (s *site) lanIP(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, byte(s.index), byte(k)})
}

// build creates the site's namespaces and links and its first host.
func (s *site) build(name string) (*Host, error) {
	l := s.lab
	link := "s" + strconv.Itoa(s.index) // the internet's side of the site's uplink
	if s.kind == Public {
		ns := l.nsName("h"+strconv.Itoa(s.index), name)
		if err := s.uplink(ns, "eth0", link); err != nil {
			return nil, err
		}
		s.fwNS = ns
		if err := s.loadFirewall(); err != nil {
			return nil, err
		}
		return &Host{lab: l, site: s, name: name, ns: ns, ip: s.wan}, nil
	}

	rns := l.nsName("r"+strconv.Itoa(s.index), name)
	if err := s.uplink(rns, "wan0", link); err != nil {
		return nil, err
	}
	s.fwNS = rns
	gw := s.lanIP(1).String() + "/24"
	if err := ipBatch(rns,
		"link add name lan0 type bridge",
		"addr add "+gw+" dev lan0",
		"link set lan0 up",
	); err != nil {
		return nil, err
	}
	// The firewall goes in before any host exists, so that nothing ever
	// crosses an open router.
	if err := s.loadFirewall(); err != nil {
		return nil, err
	}
	return s.addLANHost(name)
}

// uplink creates namespace ns with interface dev linked to the internet,
// where the other end is named link.
func (s *site) uplink(ns, dev, link string) error {
	l := s.lab
	if err := l.addNamespace(ns); err != nil {
		return err
	}
	if err := setupNamespace(ns, s.kind != Public); err != nil {
		return err
	}
	mtu := ""
	if s.mtu != 0 {
		mtu = " mtu " + strconv.Itoa(s.mtu)
	}
	if err := ipBatch(l.inet,
		"link add name "+link+mtu+" type veth peer name "+dev+mtu+" netns "+ns,
		"addr add "+s.upstream.String()+"/24 dev "+link,
		"link set "+link+" up",
	); err != nil {
		return err
	}
	return ipBatch(ns,
		"addr add "+s.wan.String()+"/24 dev "+dev,
		"link set "+dev+" up",
		"route add default via "+s.upstream.String(),
	)
}

// addLANHost adds a host namespace on the router's LAN bridge.
func (s *site) addLANHost(name string) (*Host, error) {
	s.mu.Lock()
	s.lanHosts++
	k := s.lanHosts
	s.mu.Unlock()
	if k+1 > 254 {
		return nil, fmt.Errorf("more than 253 hosts on LAN %d", s.index)
	}
	l := s.lab
	ns := l.nsName("h"+strconv.Itoa(s.index)+"-"+strconv.Itoa(k), name)
	if err := l.addNamespace(ns); err != nil {
		return nil, err
	}
	if err := setupNamespace(ns, false); err != nil {
		return nil, err
	}
	port := "h" + strconv.Itoa(k) // the router's side, a port of lan0
	ip := s.lanIP(k + 1)
	if err := ipBatch(s.fwNS,
		"link add name "+port+" type veth peer name eth0 netns "+ns,
		"link set "+port+" master lan0",
		"link set "+port+" up",
	); err != nil {
		return nil, err
	}
	if err := ipBatch(ns,
		"addr add "+ip.String()+"/24 dev eth0",
		"link set eth0 up",
		"route add default via "+s.lanIP(1).String(),
	); err != nil {
		return nil, err
	}
	return &Host{lab: l, site: s, name: name, ns: ns, ip: ip}, nil
}

// ipBatch runs ip commands inside namespace ns, in one process.
func ipBatch(ns string, cmds ...string) error {
	var b []byte
	for _, c := range cmds {
		b = append(b, c...)
		b = append(b, '\n')
	}
	in := string(b)
	if _, err := run(&in, "ip", "-n", ns, "-batch", "-"); err != nil {
		return fmt.Errorf("%w; batch was %q", err, cmds)
	}
	return nil
}
