// Package natlab builds small internets out of Linux network namespaces so
// that integration tests can run real Tether processes on different "hosts"
// behind different kinds of NAT.
//
// A Lab has one namespace playing "the internet": a plain router with no
// firewall that owns 198.18.0.0/15 (the benchmarking range, never routed on
// the real internet). Every host added with AddHost gets a site of its own,
// site n being the link 198.18.n.0/24 with the internet at 198.18.n.1:
//
//   - a Public host sits on that link itself, at 198.18.n.2;
//   - any other kind gets a router namespace at 198.18.n.2 (its WAN address,
//     wan0) that masquerades a LAN 10.0.n.0/24 (bridge lan0, router at
//     10.0.n.1); the host is 10.0.n.2 and AddLANHost adds 10.0.n.3 and so on
//     behind the same router.
//
// The routers behave like home routers, as measured in
// shared/notes/netns-nat-lab.md: a stateful forward chain, a masquerade rule,
// and an input chain that drops unsolicited packets addressed to the router.
// That last chain matters: without it, a peer's first hole-punching packet
// leaves a conntrack entry on the router that steals the port the other
// side's outbound mapping wants, and hole punching between two easy NATs
// fails. With it, plain UDP hole punching behaves as Tailscale expects:
// easy↔easy, public↔easy and public↔hard work; easy↔hard, hard↔hard and
// anything to a UDP-blocked host do not.
//
// No namespace has a route to the machine's real network, and nothing is
// created in the machine's own namespace: veth pairs are created directly
// inside the lab's namespaces, so only namespace names need to be unique.
// They are "tnl-<pid>-<random>-<role>"; Cleanup removes them (and kills any
// process still running inside), and New removes those left behind by a
// test process that no longer exists.
//
// Usage:
//
//	lab := natlab.New(t) // skips unless root with ip and nft installed
//	server := lab.AddHost("server", natlab.Public)
//	alice := lab.AddHost("alice", natlab.EasyNAT, natlab.WithLoss(5))
//	cmd := alice.Command(ctx, tetherBin, "agent", "--url", "http://"+server.IP().String()+":8080")
//	ln, err := server.Listen("tcp4", ":8080") // an in-process socket inside server's namespace
//	err = alice.BlockUDP(true)                // change her router while the test runs
//
// New skips the test when the machine cannot host a lab (not Linux, not
// root, ip or nft missing). Set TETHER_NATLAB=1 to turn that skip into a
// failure, so that CI cannot silently stop running these tests.
package natlab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// EnvRequire is the environment variable that, set to "1", makes New fail
// instead of skip when the machine cannot host a lab.
const EnvRequire = "TETHER_NATLAB"

// RouterKind is what stands between a host and the internet.
type RouterKind int

const (
	// Public gives the host a public 198.18.x address directly, with no
	// router or firewall in front of it (a server, or a peer with a public
	// IP).
	Public RouterKind = iota
	// EasyNAT is endpoint-independent mapping (masquerade keeps the source
	// port when it can) with a stateful firewall: a "port-restricted cone"
	// home router.
	EasyNAT
	// HardNAT maps every flow to a random port (endpoint-dependent mapping),
	// like a symmetric NAT or a carrier-grade NAT.
	HardNAT
	// UDPBlocked is an EasyNAT that forwards no UDP at all, only TCP and
	// ICMP, like a strict corporate firewall.
	UDPBlocked
)

func (k RouterKind) String() string {
	switch k {
	case Public:
		return "Public"
	case EasyNAT:
		return "EasyNAT"
	case HardNAT:
		return "HardNAT"
	case UDPBlocked:
		return "UDPBlocked"
	}
	return "RouterKind(" + strconv.Itoa(int(k)) + ")"
}

// An Option adjusts the site that AddHost builds.
type Option func(*siteConfig)

type siteConfig struct {
	loss int // per mille
	mtu  int // 0: leave the default (1500)
}

// WithLoss drops permille/1000 of the packets crossing the host's router at
// random, in both directions (on a Public host: of the packets it sends and
// receives). 5 is about 0.5%.
func WithLoss(permille int) Option {
	return func(c *siteConfig) { c.loss = permille }
}

// WithMTU sets the MTU of the link between the site and the internet (the
// router's WAN link, or a Public host's only link). Hosts behind a router
// keep 1500 on their LAN, so they see the small MTU as a path MTU, the way
// a PPPoE or tunnelled uplink looks from home.
func WithMTU(mtu int) Option {
	return func(c *siteConfig) { c.mtu = mtu }
}

// maxSites bounds AddHost calls per lab: site n uses 198.18.n.0/24 and
// 10.0.n.0/24.
const maxSites = 254

// namePrefix starts every namespace the package creates; New relies on it to
// find namespaces left behind by killed test processes.
const namePrefix = "tnl-"

// A Lab is one small internet. Its methods that build things (AddHost,
// AddLANHost) must be called from the test's goroutine, since they fail the
// test on error; the others are safe for concurrent use.
type Lab struct {
	t      testing.TB
	prefix string // namePrefix + pid + "-" + random, unique per lab
	inet   string // namespace of the internet router

	mu    sync.Mutex
	sites []*site  // index i is site i+1
	nss   []string // every namespace created, in creation order
}

// New builds an empty internet and registers its removal with t.Cleanup. It
// skips the test (or fails it, if TETHER_NATLAB=1) when the machine cannot
// host a lab.
func New(t testing.TB) *Lab {
	t.Helper()
	if err := canHostLab(); err != nil {
		unavailable(t, err)
	}
	removeStale(t)

	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatalf("natlab: random prefix: %v", err)
	}
	l := &Lab{
		t:      t,
		prefix: namePrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:]),
	}
	t.Cleanup(l.cleanup)

	l.inet = l.prefix + "-inet"
	if err := l.addNamespace(l.inet); err != nil {
		// The first namespace is where a container without CAP_SYS_ADMIN
		// or a read-only /var/run fails: treat it like a missing tool.
		unavailable(t, err)
	}
	if err := setupNamespace(l.inet, true); err != nil {
		t.Fatalf("natlab: %v", err)
	}
	return l
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("natlab: cannot build a lab: %v (%s=1 requires it)", err, EnvRequire)
	}
	t.Skipf("natlab: cannot build a lab: %v; run as root with ip (iproute2) and nft (nftables) installed, or set %s=1 to make this a failure", err, EnvRequire)
}

func canHostLab() error {
	if runtime.GOOS != "linux" {
		return errors.New("network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: %w", tool, err)
		}
	}
	return nil
}

// AddHost adds a host on its own site, behind a router of the given kind
// (or directly on the internet for Public). name is for logs and namespace
// names only.
func (l *Lab) AddHost(name string, kind RouterKind, opts ...Option) *Host {
	l.t.Helper()
	var cfg siteConfig
	for _, o := range opts {
		o(&cfg)
	}
	if kind < Public || kind > UDPBlocked {
		l.t.Fatalf("natlab: AddHost %q: unknown router kind %v", name, kind)
	}
	if cfg.loss < 0 || cfg.loss > 1000 {
		l.t.Fatalf("natlab: AddHost %q: loss %d‰ out of range 0..1000", name, cfg.loss)
	}

	l.mu.Lock()
	n := len(l.sites) + 1
	if n > maxSites {
		l.mu.Unlock()
		l.t.Fatalf("natlab: AddHost %q: more than %d sites", name, maxSites)
	}
	s := &site{
		lab:      l,
		index:    n,
		kind:     kind,
		mtu:      cfg.mtu,
		loss:     cfg.loss,
		wan:      netip.AddrFrom4([4]byte{198, 18, byte(n), 2}),
		upstream: netip.AddrFrom4([4]byte{198, 18, byte(n), 1}),
	}
	l.sites = append(l.sites, s)
	l.mu.Unlock()

	h, err := s.build(name)
	if err != nil {
		l.t.Fatalf("natlab: AddHost %q: %v", name, err)
	}
	l.t.Logf("natlab: %s", h)
	return h
}

// AddLANHost adds a host on the same LAN as behind, behind the same router,
// so that the two can reach each other directly by their LAN addresses.
// behind must not be Public.
func (l *Lab) AddLANHost(name string, behind *Host) *Host {
	l.t.Helper()
	if behind.lab != l {
		l.t.Fatalf("natlab: AddLANHost %q: %s belongs to another lab", name, behind.name)
	}
	if behind.site.kind == Public {
		l.t.Fatalf("natlab: AddLANHost %q: %s is Public and has no LAN; add another Public host instead", name, behind.name)
	}
	h, err := behind.site.addLANHost(name)
	if err != nil {
		l.t.Fatalf("natlab: AddLANHost %q: %v", name, err)
	}
	l.t.Logf("natlab: %s", h)
	return h
}

// nsName returns a namespace name for a role, with the host's name reduced
// to something short and safe for debugging (`ip netns list`).
func (l *Lab) nsName(role string, name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if b.Len() >= 12 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return l.prefix + "-" + role
	}
	return l.prefix + "-" + role + "-" + b.String()
}

func (l *Lab) addNamespace(ns string) error {
	if _, err := run(nil, "ip", "netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	return nil
}

// cleanup kills whatever still runs inside the lab and removes its
// namespaces, which destroys every interface in them.
func (l *Lab) cleanup() {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	for _, err := range removeNamespaces(nss) {
		l.t.Errorf("natlab: cleanup: %v", err)
	}
}

// removeStale deletes the namespaces of labs whose test process is gone
// (killed by a timeout or by hand before its cleanup ran). Labs of live
// processes, including concurrent `go test` runs of other packages, are
// left alone.
func removeStale(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // none yet
	}
	var stale []string
	for _, e := range entries {
		if pid, ok := ownerPID(e.Name()); ok && !processExists(pid) {
			stale = append(stale, e.Name())
		}
	}
	if len(stale) == 0 {
		return
	}
	t.Logf("natlab: removing %d stale namespaces: %s", len(stale), strings.Join(stale, " "))
	for _, err := range removeNamespaces(stale) {
		// Another lab starting at the same moment may have removed it.
		t.Logf("natlab: removing stale namespaces: %v", err)
	}
}

// ownerPID parses the pid out of a namespace name of this package.
func ownerPID(ns string) (int, bool) {
	rest, ok := strings.CutPrefix(ns, namePrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// run runs a command and returns its output, with the command line and
// output in the error.
func run(stdin *string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(*stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
