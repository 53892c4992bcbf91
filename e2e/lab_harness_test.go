package e2e

// The lab tests run the real binary inside natlab's network namespaces: the
// server on a Public host, the agent on one host and the CLI on another,
// behind the kinds of NAT that users meet. This file holds their helpers:
// the harness's processes in lab hosts (on), streams through them, and a
// probe of which path their packets take.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
	"github.com/tetherdev/tether/internal/natlab"
)

// Ports inside the lab. Every host is a namespace of its own, so fixed
// ports never collide with other tests.
const (
	labHTTPPort     = 3000
	labSTUNPort     = 3478
	labUDPRelayPort = 3479
)

// Timeouts of the lab tests, on top of the harness's. Tests wait on
// conditions and use these only as deadlines.
const (
	// directTimeout bounds waiting for a direct path where one must come
	// up: magicsock retries path discovery every few seconds.
	directTimeout = 20 * time.Second
	// directAfterRelayTimeout bounds it where the UDP relay may come up
	// first: a pair whose first hole punch was lost (to loss at the
	// routers, say) and that found the relay meanwhile stays on it until
	// magicsock looks for a direct path again, a minute after its last
	// full round of pings (upgradeUDPDirectInterval).
	directAfterRelayTimeout = time.Minute + directTimeout
	// flowTimeout bounds a stall of a live TCP session, including a path
	// change (magicsock gives up on a dead direct path after ~6.5 s, and
	// TCP's retransmission timer has backed off meanwhile).
	flowTimeout = 30 * time.Second
)

// newLab builds a lab and its server host, a Public host with the address
// 198.18.1.2 (and, with secondAddr, 198.18.1.3 as well, for a second STUN
// server at a different address).
func newLab(t *testing.T, secondAddr bool) (*natlab.Lab, *natlab.Host) {
	t.Helper()
	lab := natlab.New(t)
	h := lab.AddHost("server", natlab.Public)
	if secondAddr {
		// natlab gives a host one address; the internet router reaches
		// the rest of the site's /24 on the same link.
		cmd := exec.Command("ip", "-n", h.Namespace(), "addr", "add", secondIP(h).String()+"/24", "dev", "eth0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("add a second address to the server host: %v: %s", err, out)
		}
	}
	return lab, h
}

// secondIP is the server host's second address (see newLab).
func secondIP(h *natlab.Host) netip.Addr {
	b := h.IP().As4()
	b[3]++
	return netip.AddrFrom4(b)
}

// on runs the binary built for this run inside a lab host's namespace.
// ip netns exec execs tether, so the pid and process group are tether's
// own and the harness's kill reaches it.
func on(h *natlab.Host) harness.Tether {
	return harness.Tether{Bin: here.Bin, Command: h.Command, Host: h.Name()}
}

// startLabServer starts a server on h at its address, with the built-in
// STUN server on stunAddrs (the host's address if none).
func startLabServer(t testing.TB, h *natlab.Host, stunAddrs []netip.Addr, extra ...string) *harness.Server {
	t.Helper()
	if len(stunAddrs) == 0 {
		stunAddrs = []netip.Addr{h.IP()}
	}
	var stun []string
	for _, a := range stunAddrs {
		stun = append(stun, netip.AddrPortFrom(a, labSTUNPort).String())
	}
	addr := netip.AddrPortFrom(h.IP(), labHTTPPort).String()
	return on(h).StartServerWith(t, harness.ServerOptions{
		Addr: addr, STUN: stun, UDPRelay: netip.AddrPortFrom(h.IP(), labUDPRelayPort).String(),
		Args: append([]string{"--access-url", "http://" + addr}, extra...),
	})
}

// labWorkspace is a server, an admin logged in from the client host, and
// workspace dev whose agent runs on the agent host.
type labWorkspace struct {
	*harness.Deployment
	lab    *natlab.Lab
	agentH *natlab.Host
	client *natlab.Host
}

// startLabWorkspace logs the admin in to srv from clientH, creates dev and
// runs its agent on agentH. env is added to the agent's and the user's
// environments.
func startLabWorkspace(t *testing.T, lab *natlab.Lab, srv *harness.Server, agentH, clientH *natlab.Host, env ...string) *labWorkspace {
	t.Helper()
	d := harness.StartDeployment(t, srv, harness.DeploymentOptions{
		CLI: on(clientH), Agent: on(agentH), CLIEnv: env, AgentEnv: env,
	})
	return &labWorkspace{Deployment: d, lab: lab, agentH: agentH, client: clientH}
}

// timedPong is a ping line and when the test read it.
type timedPong struct {
	pingLine
	at time.Time
}

// pingStream runs `tether ping dev --output json` and returns its pongs as
// they come, timed, until the command ends (then the channel closes).
func pingStream(t testing.TB, u *harness.User, args ...string) (<-chan timedPong, *harness.Proc) {
	t.Helper()
	p := u.Start("ping", append([]string{"ping", "dev", "--output", "json"}, args...)...)
	ch := make(chan timedPong, 1024)
	go func() {
		defer close(ch)
		for {
			select {
			case line := <-p.Lines():
				var pl pingLine
				if json.Unmarshal([]byte(line), &pl) == nil {
					ch <- timedPong{pl, time.Now()}
				}
			case <-p.Done():
				// Lines printed just before the exit are still queued.
				for {
					select {
					case line := <-p.Lines():
						var pl pingLine
						if json.Unmarshal([]byte(line), &pl) == nil {
							ch <- timedPong{pl, time.Now()}
						}
					default:
						return
					}
				}
			}
		}
	}()
	return ch, p
}

// timeToDirect streams pings until want consecutive pongs came directly,
// and returns the time from the first pong (of any path) to the first of
// those direct pongs, and every pong seen.
func timeToDirect(t testing.TB, u *harness.User, want int, timeout time.Duration) (time.Duration, []pingLine) {
	t.Helper()
	return timeToPath(t, u, "direct", want, timeout)
}

// timeToPath is timeToDirect for any path ("direct", "relay", "derp"),
// with further flags for tether ping.
func timeToPath(t testing.TB, u *harness.User, path string, want int, timeout time.Duration, args ...string) (time.Duration, []pingLine) {
	t.Helper()
	n := int(timeout/(100*time.Millisecond)) + want
	ch, p := pingStream(t, u, append([]string{"-n", strconv.Itoa(n), "--interval", "100ms"}, args...)...)
	defer p.Kill()
	var (
		all         []pingLine
		first       time.Time
		directSince time.Time
		run         int
	)
	deadline := time.After(timeout)
	for {
		select {
		case pong, ok := <-ch:
			if !ok {
				t.Fatalf("ping ended before %d %s pongs in a row: %+v\n%s", want, path, all, p.Output())
			}
			all = append(all, pong.pingLine)
			if pong.Path == "timeout" {
				run = 0
				continue
			}
			if first.IsZero() {
				first = pong.at
			}
			if pong.Path != path {
				run = 0
				continue
			}
			if run == 0 {
				directSince = pong.at
			}
			run++
			if run == want {
				return directSince.Sub(first), all
			}
		case <-deadline:
			t.Fatalf("no %d %s pongs in a row within %s: %+v", want, path, timeout, all)
		}
	}
}

// lastPath returns the path of the last pong, with all of them for errors.
func lastPath(lines []pingLine) string {
	return lines[len(lines)-1].Path
}

// echoServer serves TCP on a host's loopback, echoing each connection's
// bytes back, and returns its port. It stops at the end of the test.
func echoServer(t testing.TB, h *natlab.Host) int {
	t.Helper()
	ln, err := h.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	t.Cleanup(func() {
		ln.Close()
		// The agent may be gone without closing its side.
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// udpEchoServer echoes datagrams on a host's loopback and returns its port.
func udpEchoServer(t testing.TB, h *natlab.Host) int {
	t.Helper()
	pc, err := h.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], addr)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// stream is a TCP session that keeps moving data through an echo server:
// a writer sends a deterministic byte stream at a bounded rate and a reader
// checks that every byte comes back, in order.
type stream struct {
	conn    net.Conn
	echoed  atomic.Int64 // bytes that came back intact
	errc    chan error   // the first failure of either side
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped sync.Once
}

// streamRate bounds the stream to a rate any path sustains, even DERP on a
// loaded machine, so that the test measures the path, not a backlog.
const (
	streamChunk    = 16 << 10
	streamInterval = 10 * time.Millisecond // 1.6 MB/s
)

// streamByte is the stream's i-th byte: a pattern that catches reordering
// and corruption.
func streamByte(i int64) byte { return byte(i*7 + i>>11) }

func startStream(t testing.TB, c net.Conn) *stream {
	s := &stream{conn: c, errc: make(chan error, 2), stop: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, streamChunk)
		var off int64
		tick := time.NewTicker(streamInterval)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			// Keep at most a few chunks in flight: a stalled path must show
			// as a stall, not be hidden by buffers filling up.
			if off-s.echoed.Load() > 8*streamChunk {
				continue
			}
			for i := range buf {
				buf[i] = streamByte(off + int64(i))
			}
			c.SetWriteDeadline(time.Now().Add(flowTimeout + 30*time.Second))
			if _, err := c.Write(buf); err != nil {
				s.fail(fmt.Errorf("write at byte %d: %w", off, err))
				return
			}
			off += int64(len(buf))
		}
	}()
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 64<<10)
		var off int64
		for {
			c.SetReadDeadline(time.Now().Add(flowTimeout + 30*time.Second))
			n, err := c.Read(buf)
			for i := range n {
				if buf[i] != streamByte(off+int64(i)) {
					s.fail(fmt.Errorf("byte %d came back as %#x, want %#x", off+int64(i), buf[i], streamByte(off+int64(i))))
					return
				}
			}
			off += int64(n)
			s.echoed.Store(off)
			if err != nil {
				select {
				case <-s.stop:
				default:
					s.fail(fmt.Errorf("read at byte %d: %w", off, err))
				}
				return
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// err returns the stream's first failure, or nil.
func (s *stream) err() error {
	select {
	case err := <-s.errc:
		s.errc <- err
		return err
	default:
		return nil
	}
}

func (s *stream) close() {
	s.stopped.Do(func() {
		close(s.stop)
		s.conn.Close()
		s.wg.Wait()
	})
}

// waitFlowing waits until at least n more bytes came back, failing the test
// if the session breaks or stalls for longer than timeout. It returns how
// long the wait took.
func (s *stream) waitFlowing(t testing.TB, n int64, timeout time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	target := s.echoed.Load() + n
	deadline := start.Add(timeout)
	for s.echoed.Load() < target {
		if err := s.err(); err != nil {
			t.Fatalf("%s: the TCP session broke: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d of %d bytes came back within %s", what, s.echoed.Load()-(target-n), n, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// pathProbe counts, with nftables on a host, the bytes that reach it
// directly over UDP from anyone but the server (a direct WireGuard path),
// over TCP from the server (the DERP relay, and a little API traffic), and
// over UDP from the server's UDP relay port.
// It shows which path a live session takes, whichever process owns it.
type pathProbe struct {
	t    testing.TB
	host *natlab.Host
}

// probeTable is the nftables table of a pathProbe, apart from natlab's own.
const probeTable = "tetherprobe"

func newPathProbe(t testing.TB, h *natlab.Host, server netip.Addr) *pathProbe {
	t.Helper()
	rules := fmt.Sprintf(`table ip %[1]s {
	counter direct {}
	counter relay {}
	counter udprelay {}
	chain input {
		type filter hook input priority filter - 10; policy accept;
		ip saddr != %[2]s meta l4proto udp counter name direct
		ip saddr %[2]s tcp sport %[3]d counter name relay
		ip saddr %[2]s udp sport %[4]d counter name udprelay
	}
}
`, probeTable, server, labHTTPPort, labUDPRelayPort)
	cmd := h.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("path probe on %s: %v: %s", h.Name(), err, out)
	}
	return &pathProbe{t: t, host: h}
}

// bytes returns the counters: direct UDP and DERP bytes received so far.
func (p *pathProbe) bytes() (direct, relay int64) {
	direct, relay, _ = p.allBytes()
	return direct, relay
}

// allBytes returns the counters: direct UDP, DERP and UDP relay bytes
// received so far.
func (p *pathProbe) allBytes() (direct, relay, udpRelay int64) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	out, err := p.host.Command(ctx, "nft", "-j", "list", "counters", "table", "ip", probeTable).Output()
	if err != nil {
		p.t.Fatalf("read path probe: %v", err)
	}
	var v struct {
		Nftables []struct {
			Counter *struct {
				Name  string `json:"name"`
				Bytes int64  `json:"bytes"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		p.t.Fatalf("read path probe: %v: %s", err, out)
	}
	for _, o := range v.Nftables {
		if o.Counter == nil {
			continue
		}
		switch o.Counter.Name {
		case "direct":
			direct = o.Counter.Bytes
		case "relay":
			relay = o.Counter.Bytes
		case "udprelay":
			udpRelay = o.Counter.Bytes
		}
	}
	return direct, relay, udpRelay
}

// waitPath waits until a window of probeWindow sees at least min bytes
// arrive over the wanted path ("direct", "derp" or "relay") and almost none
// over the others, and returns how long that took (to the start of the window).
func (p *pathProbe) waitPath(want string, min int64, timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	d0, r0, u0 := p.allBytes()
	t0 := time.Now()
	for {
		time.Sleep(probeWindow)
		d1, r1, u1 := p.allBytes()
		t1 := time.Now()
		dd, dr, du := d1-d0, r1-r0, u1-u0
		var ok bool
		switch want {
		case "direct":
			ok = dd >= min && dr < min/4 && du < min/4
		case "derp":
			ok = dr >= min && dd < min/4 && du < min/4
		case "relay":
			ok = du >= min && dd < min/4 && dr < min/4
		default:
			p.t.Fatalf("waitPath(%q)", want)
		}
		if ok {
			return t0.Sub(start)
		}
		if t1.After(deadline) {
			p.t.Fatalf("traffic did not move to the %s path within %s (last %s: %d bytes direct, %d over DERP, %d over the UDP relay)", want, timeout, t1.Sub(t0).Round(time.Millisecond), dd, dr, du)
		}
		d0, r0, u0, t0 = d1, r1, u1, t1
	}
}

// udpBlockedAndBack blocks UDP on h's router while the session s runs:
// the session must go on over DERP. Then it unblocks it: the session must
// come back to the path back ("direct" or "relay") within backTimeout, and
// keep flowing. Both moves are logged as figures.
func udpBlockedAndBack(t *testing.T, h *natlab.Host, s *stream, probe *pathProbe, back string, backTimeout time.Duration) {
	t.Helper()
	if err := h.BlockUDP(true); err != nil {
		t.Fatal(err)
	}
	blocked := time.Now()
	stall := s.waitFlowing(t, 256<<10, flowTimeout, "after blocking UDP")
	probe.waitPath("derp", pathMin, flowTimeout)
	t.Logf("FIGURE UDP blocked: data flowing again after %s, over DERP by %s", stall.Round(time.Millisecond), time.Since(blocked).Round(time.Millisecond))

	if err := h.BlockUDP(false); err != nil {
		t.Fatal(err)
	}
	unblocked := time.Now()
	probe.waitPath(back, pathMin, backTimeout)
	t.Logf("FIGURE UDP unblocked: %s again after %s", back, time.Since(unblocked).Round(time.Millisecond))
	s.waitFlowing(t, 1<<20, flowTimeout, "after unblocking UDP")
}

// probeWindow is how long the probe watches the counters each time.
const probeWindow = 250 * time.Millisecond
