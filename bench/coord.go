package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/harness"
)

// The coordinator scale test. The coordinator (coordinator.Coordinator
// behind coordinator.NewWebSocket, as the server mounts it, without the HTTP
// authentication in front) runs in a child process of its own, so that its
// heap and CPU time are its own; this process plays N peers over real
// WebSockets on loopback.
//
// Topology: agents, each with fanout clients bound to it. An update is an
// agent's new node; the coordinator forwards it to the agent's clients, and
// its fan-out latency is the time from the agent writing it to a client
// reading it (both clocks are this machine's wall clock).

// coordIdleWindow is how long the idle coordinator's CPU time is sampled.
const coordIdleWindow = time.Second

// coordServerArg, as the first argument, makes the bench binary the child.
const coordServerArg = "internal-coord-server"

// coordStats is what the child reports of itself.
type coordStats struct {
	HeapAlloc  uint64        `json:"heap_alloc"`
	StackInuse uint64        `json:"stack_inuse"`
	Sys        uint64        `json:"sys"`
	Goroutines int           `json:"goroutines"`
	CPU        time.Duration `json:"cpu"` // user + system time so far
}

// coordServerMain is the child: it serves the coordinator on loopback,
// prints its address, and exits when its stdin closes.
func coordServerMain() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := coordinator.New(coordinator.Options{})
	var wg sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("/coordinate", func(w http.ResponseWriter, r *http.Request) {
		agentID, err := uuid.Parse(r.URL.Query().Get("agent"))
		if err != nil {
			http.Error(w, "bad agent", http.StatusBadRequest)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		if cs := r.URL.Query().Get("client"); cs != "" {
			clientID, err := uuid.Parse(cs)
			if err != nil {
				conn.Close(websocket.StatusPolicyViolation, "bad client")
				return
			}
			ws := coordinator.NewWebSocket(conn, clientID, coordinator.WebSocketOptions{})
			ws.Close(c.ServeClient(ctx, clientID, agentID, ws))
			return
		}
		ws := coordinator.NewWebSocket(conn, agentID, coordinator.WebSocketOptions{})
		ws.Close(c.ServeAgent(ctx, agentID, ws))
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			// Twice: the first GC's finalizers may free more.
			runtime.GC()
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		json.NewEncoder(w).Encode(coordStats{
			HeapAlloc:  ms.HeapAlloc,
			StackInuse: ms.StackInuse,
			Sys:        ms.Sys,
			Goroutines: runtime.NumGoroutine(),
			CPU:        time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		})
	})
	// A CPU profile of the update phase, for -coord-profile.
	var profile *os.File
	mux.HandleFunc("/profile", func(w http.ResponseWriter, r *http.Request) {
		if path := r.URL.Query().Get("start"); path != "" {
			f, err := os.Create(path)
			if err == nil {
				err = pprof.StartCPUProfile(f)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			profile = f
			return
		}
		if profile != nil {
			pprof.StopCPUProfile()
			profile.Close()
			profile = nil
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Printf("listening %s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	srv.Close()
	return 0
}

// coordChild is the running child.
type coordChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan struct{}
}

func startCoordChild(ctx context.Context) (*coordChild, error) {
	cmd, stdin, stdout, err := startChild(coordServerArg)
	if err != nil {
		return nil, err
	}
	ch := &coordChild{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(ch.done)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			ch.close()
			return nil, fmt.Errorf("coordinator child printed %q", l)
		}
		ch.addr = addr
		return ch, nil
	case <-ch.done:
		return nil, errors.New("coordinator child exited before listening")
	case <-time.After(harness.StartTimeout):
		ch.close()
		return nil, errors.New("coordinator child did not start")
	}
}

func (ch *coordChild) stats(ctx context.Context, gc bool) (coordStats, error) {
	u := "http://" + ch.addr + "/stats"
	if gc {
		u += "?gc=1"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return coordStats{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return coordStats{}, err
	}
	defer resp.Body.Close()
	var s coordStats
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// profile starts (path non-empty) or stops the child's CPU profile.
func (ch *coordChild) profile(ctx context.Context, path string) error {
	u := "http://" + ch.addr + "/profile"
	if path != "" {
		u += "?start=" + url.QueryEscape(path)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("profile: %s", b)
	}
	return nil
}

func (ch *coordChild) close() {
	ch.stdin.Close()
	select {
	case <-ch.done:
	case <-time.After(10 * time.Second):
		ch.cmd.Process.Kill()
		<-ch.done
	}
}

// simPeer is one simulated agent or client.
type simPeer struct {
	id    uuid.UUID
	agent *simPeer // nil for an agent
	conn  *websocket.Conn
	node  tether.Node
	// seen counts the counterpart nodes it has received before the
	// measured phase: 1 for a client, fanout for an agent.
	seen atomic.Int32

	// The measured phase. An agent's sent holds the AsOf of each update
	// it sent; a client's next is the first of its agent's updates it has
	// not yet seen (or seen superseded). Both guarded by the agent's mu.
	mu   sync.Mutex
	sent []time.Time
	next int
}

// coordRun is one scale test with one child.
type coordRun struct {
	cfg     *config
	child   *coordChild
	fanout  int
	agents  []*simPeer
	clients []*simPeer

	phaseStart atomic.Int64 // unix nanos; updates with AsOf after it are measured
	messages   atomic.Int64 // measured updates clients received
	mu         sync.Mutex
	latencies  []time.Duration // guarded by mu
	readers    sync.WaitGroup
}

func newSimNode(id uuid.UUID, port int) tether.Node {
	return tether.Node{
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
		PreferredDERP: 999,
		DERPLatency:   map[string]float64{"999-v4": 0.0012},
		// Realistic size: a LAN, a STUN-mapped and an IPv6 endpoint.
		Endpoints: []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port)),
			netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port)),
		},
		AsOf: time.Now(),
	}
}

// runCoord runs the scale test for each size in cfg.coordSizes.
func runCoord(ctx context.Context, cfg *config, res *results) error {
	for _, n := range cfg.coordSizes {
		cfg.logf("coordinator: %d peers", n)
		if err := coordSize(ctx, cfg, res, n); err != nil {
			return fmt.Errorf("%d peers: %w", n, err)
		}
	}
	return nil
}

func coordSize(ctx context.Context, cfg *config, res *results, n int) error {
	fanout := cfg.coordFanout
	numAgents := max(1, n/(fanout+1))
	child, err := startCoordChild(ctx)
	if err != nil {
		return err
	}
	r := &coordRun{cfg: cfg, child: child, fanout: fanout}
	defer r.close()
	r.phaseStart.Store(1 << 62) // nothing is measured until the phase starts

	base, err := child.stats(ctx, true)
	if err != nil {
		return err
	}
	t0 := time.Now()
	for i := range numAgents {
		a := &simPeer{id: uuid.New()}
		a.node = newSimNode(a.id, 10000+i%50000)
		r.agents = append(r.agents, a)
		for j := range fanout {
			c := &simPeer{id: uuid.New(), agent: a}
			c.node = newSimNode(c.id, 20000+(i*fanout+j)%40000)
			r.clients = append(r.clients, c)
		}
	}
	// Agents first, so that each client is introduced at once.
	if err := r.connectAll(ctx, r.agents); err != nil {
		return err
	}
	if err := r.connectAll(ctx, r.clients); err != nil {
		return err
	}
	if err := r.awaitIntroduced(ctx); err != nil {
		return err
	}
	total := len(r.agents) + len(r.clients)
	connectTime := time.Since(t0)

	idle, err := child.stats(ctx, true)
	if err != nil {
		return err
	}
	heapPer := float64(int64(idle.HeapAlloc)-int64(base.HeapAlloc)) / float64(total) / 1024
	stackPer := float64(int64(idle.StackInuse)-int64(base.StackInuse)) / float64(total) / 1024
	prefix := fmt.Sprintf("coord/n=%d/", total)
	topo := fmt.Sprintf("%d agents × %d clients, connected in %.1f s", len(r.agents), fanout, connectTime.Seconds())
	res.lower(prefix+"heap-per-peer", heapPer, "KiB", topo)
	res.lower(prefix+"heap+stack-per-peer", heapPer+stackPer, "KiB",
		fmt.Sprintf("%d goroutines in the coordinator", idle.Goroutines))

	// The coordinator's idle cost (heartbeats, GC), to take out of the
	// update phase's CPU time.
	idleFrom, err := child.stats(ctx, false)
	if err != nil {
		return err
	}
	t1 := time.Now()
	time.Sleep(coordIdleWindow)
	idleTo, err := child.stats(ctx, false)
	if err != nil {
		return err
	}
	idleRate := float64(idleTo.CPU-idleFrom.CPU) / float64(time.Since(t1))

	// The measured phase: updates at a steady rate, round-robin over agents.
	updates := cfg.coordUpdates
	before, err := child.stats(ctx, false)
	if err != nil {
		return err
	}
	profiling := cfg.coordProfile != "" && n == cfg.coordSizes[len(cfg.coordSizes)-1]
	if profiling {
		if err := child.profile(ctx, cfg.coordProfile); err != nil {
			return err
		}
	}
	phaseStart := time.Now()
	r.startPhase(phaseStart)
	tick := time.NewTicker(time.Second / time.Duration(cfg.coordRate))
	for i := range updates {
		if err := r.sendUpdate(ctx, r.agents[i%len(r.agents)], i); err != nil {
			tick.Stop()
			return err
		}
		<-tick.C
	}
	tick.Stop()
	s, msgs, missing := r.collect()
	phase := time.Since(phaseStart)
	if profiling {
		if err := child.profile(ctx, ""); err != nil {
			return err
		}
		cfg.logf("coordinator CPU profile of the update phase: %s", cfg.coordProfile)
	}
	after, err := child.stats(ctx, false)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d updates at %d/s; %s", updates, cfg.coordRate, deliveryNote(updates*fanout, msgs, missing))
	res.lower(prefix+"fanout-p50", millis(s.P50), "ms", note)
	res.lower(prefix+"fanout-p99", millis(s.P99), "ms", note)
	idleCPU := time.Duration(idleRate * float64(phase))
	cpu := max(after.CPU-before.CPU-idleCPU, 0)
	res.lower(prefix+"cpu-per-update", micros(cpu)/float64(updates), "µs",
		fmt.Sprintf("%.1f µs per message sent; idle cost %.1f%% of a core, taken out",
			micros(cpu)/float64(max(msgs, 1)), idleRate*100))

	// A storm: every agent updates at once, as after a network change
	// that moves many workspaces.
	r.startPhase(time.Now())
	if err := r.burst(ctx, updates); err != nil {
		return err
	}
	s, msgs, missing = r.collect()
	note = fmt.Sprintf("all %d agents at once; %s", len(r.agents), deliveryNote(len(r.agents)*fanout, msgs, missing))
	res.lower(prefix+"burst-p99", millis(s.P99), "ms", note)
	return nil
}

// deliveryNote says how many updates reached clients, and how.
func deliveryNote(want int, msgs int64, missing int) string {
	note := fmt.Sprintf("%d of %d updates reached their clients", want-missing, want)
	if coalesced := int64(want-missing) - msgs; coalesced > 0 {
		note += fmt.Sprintf(", %d of them superseded in the queue by a newer one (by design)", coalesced)
	}
	if missing > 0 {
		note += " (MISSING after 30 s)"
	}
	return note
}

// startPhase starts measuring: updates produced from now on count.
func (r *coordRun) startPhase(t time.Time) {
	r.mu.Lock()
	r.latencies = nil
	r.mu.Unlock()
	for _, a := range r.agents {
		a.mu.Lock()
		a.sent = nil
		a.mu.Unlock()
	}
	for _, c := range r.clients {
		c.agent.mu.Lock()
		c.next = 0
		c.agent.mu.Unlock()
	}
	r.messages.Store(0)
	r.phaseStart.Store(t.UnixNano())
}

// sendUpdate sends agent a's node with a changed endpoint, stamped now.
func (r *coordRun) sendUpdate(ctx context.Context, a *simPeer, seq int) error {
	a.mu.Lock()
	a.node.Endpoints[0] = netip.AddrPortFrom(a.node.Endpoints[0].Addr(), uint16(30000+seq%30000))
	// Wall clock only, as it comes back from JSON.
	a.node.AsOf = time.Now().Round(0)
	a.sent = append(a.sent, a.node.AsOf)
	b, err := json.Marshal(tether.CoordinateRequest{Node: &a.node})
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if err := a.conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("agent write: %w", err)
	}
	return nil
}

// received records that client c got its agent's node stamped asOf at now.
// The coordinator's queue keeps only the newest node of each peer, so a
// client may never see an update that a newer one superseded: the older
// one counts as delivered when the newer one arrives, which is when the
// client's view became at least that fresh.
func (r *coordRun) received(c *simPeer, asOf, now time.Time) {
	a := c.agent
	var lat []time.Duration
	a.mu.Lock()
	for c.next < len(a.sent) && !a.sent[c.next].After(asOf) {
		lat = append(lat, now.Sub(a.sent[c.next]))
		c.next++
	}
	a.mu.Unlock()
	r.messages.Add(1)
	r.mu.Lock()
	r.latencies = append(r.latencies, lat...)
	r.mu.Unlock()
}

// burst sends one update from every agent as fast as a few writers can.
func (r *coordRun) burst(ctx context.Context, seq int) error {
	const writers = 8
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w; i < len(r.agents); i += writers {
				if err := r.sendUpdate(ctx, r.agents[i], seq+i); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range writers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// collect waits until every client is up to date with its agent's last
// update, or 30 s, and returns the latencies, how many messages clients
// got, and how many updates never reached them.
func (r *coordRun) collect() (s dist, messages int64, missing int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, messages, missing = r.collectNow()
		if missing == 0 || time.Now().After(deadline) {
			return s, messages, missing
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collectNow is collect without waiting.
func (r *coordRun) collectNow() (s dist, messages int64, missing int) {
	for _, c := range r.clients {
		c.agent.mu.Lock()
		missing += len(c.agent.sent) - c.next
		c.agent.mu.Unlock()
	}
	r.mu.Lock()
	s = summarize(r.latencies)
	r.mu.Unlock()
	return s, r.messages.Load(), missing
}

// connectAll dials the peers' WebSockets, a few at a time, sends each one's
// node and starts its reader.
func (r *coordRun) connectAll(ctx context.Context, peers []*simPeer) error {
	const parallel = 32
	sem := make(chan struct{}, parallel)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for _, p := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.connect(ctx, p); err != nil {
				errOnce.Do(func() { first = err })
			}
		}()
	}
	wg.Wait()
	return first
}

func (r *coordRun) connect(ctx context.Context, p *simPeer) error {
	ctx, cancel := context.WithTimeout(ctx, harness.StartTimeout)
	defer cancel()
	q := "agent=" + p.id.String()
	if p.agent != nil {
		q = "agent=" + p.agent.id.String() + "&client=" + p.id.String()
	}
	conn, _, err := websocket.Dial(ctx, "ws://"+r.child.addr+"/coordinate?"+q, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(tether.MaxCoordinateMessage)
	p.conn = conn
	b, err := json.Marshal(tether.CoordinateRequest{Node: &p.node})
	if err != nil {
		return err
	}
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("write node: %w", err)
	}
	r.readers.Add(1)
	go r.read(p)
	return nil
}

// read handles what the coordinator sends a peer until its socket closes.
func (r *coordRun) read(p *simPeer) {
	defer r.readers.Done()
	for {
		_, b, err := p.conn.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now()
		var resp tether.CoordinateResponse
		if err := json.Unmarshal(b, &resp); err != nil {
			continue
		}
		for _, u := range resp.Peers {
			if u.Kind != tether.PeerNode || u.Node == nil {
				continue
			}
			if u.Node.AsOf.UnixNano() >= r.phaseStart.Load() {
				if p.agent != nil && u.ID == p.agent.id {
					r.received(p, u.Node.AsOf, now)
				}
				continue
			}
			p.seen.Add(1)
		}
	}
}

// awaitIntroduced waits until every client has its agent's node and every
// agent its clients' nodes: the idle state whose memory is measured.
func (r *coordRun) awaitIntroduced(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		missing := 0
		for _, a := range r.agents {
			if int(a.seen.Load()) < r.fanout {
				missing++
			}
		}
		for _, c := range r.clients {
			if c.seen.Load() < 1 {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d peers still lack their counterparts' nodes", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *coordRun) close() {
	var wg sync.WaitGroup
	for _, p := range append(r.agents, r.clients...) {
		if p.conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.conn.CloseNow()
		}()
	}
	wg.Wait()
	r.readers.Wait()
	r.child.close()
}
