package e2e

// Who the server's UDP relay serves. An attacker here is a peer of the
// deployment written by hand (a rogue): it holds real credentials of its
// own (a member's session, or the agent token of her own workspace), so
// the coordinator introduces it to the relay like any peer, and it speaks
// the relay's protocol directly (disco messages over the server's DERP,
// and bind requests over UDP) with whatever keys and pairs it likes.

import (
	"context"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/google/uuid"
	"go4.org/mem"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/disco"
	"tailscale.com/net/netmon"
	"tailscale.com/net/packet"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/internal/harness"
)

// rogue is a hand-written peer: a coordination WebSocket that sends one
// node and records what the coordinator introduces, and a DERP connection
// with the node's key, over which it talks to the UDP relay.
type rogue struct {
	t     *testing.T
	id    uuid.UUID
	node  key.NodePrivate
	disco key.DiscoPrivate
	// claimed is the disco key its node claims: its own unless forged.
	claimed key.DiscoPublic
	ws      *websocket.Conn
	derp    *derphttp.Client
	gen     uint32 // generation of its last allocation request

	mu      sync.Mutex
	relayID uuid.UUID
	relay   *tether.Node                                       // the UDP relay's node, once introduced
	peers   map[uuid.UUID]*tether.Node                         // ordinary peers introduced to it
	closed  error                                              // why the coordination ended, once it has
	changed chan struct{}                                      // closed and replaced on every change
	answers map[uint32]*disco.AllocateUDPRelayEndpointResponse // by generation
	// foreign counts disco messages from the relay sealed for another
	// disco key than the rogue's own.
	foreign atomic.Int64
}

// rogueOptions say how a rogue connects.
type rogueOptions struct {
	// Session, Owner and Name: a client of that workspace, signed in with
	// the session token. AgentToken instead: the workspace's agent.
	Session, Owner, Name string
	AgentToken           string
	// Disco, if not zero, is the disco key its node claims instead of its
	// own (a forgery: it holds no private half).
	Disco key.DiscoPublic
}

// startRogue connects a rogue to the server at srvURL and waits until the
// coordinator has introduced the UDP relay to it.
func startRogue(t *testing.T, srvURL string, o rogueOptions) *rogue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.StartTimeout)
	defer cancel()
	c, err := client.New(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	r := &rogue{
		t: t, id: uuid.New(), node: key.NewNode(), disco: key.NewDisco(),
		peers:   make(map[uuid.UUID]*tether.Node),
		changed: make(chan struct{}),
		answers: make(map[uint32]*disco.AllocateUDPRelayEndpointResponse),
	}
	r.claimed = r.disco.Public()
	if !o.Disco.IsZero() {
		r.claimed = o.Disco
	}
	var region int
	if o.AgentToken != "" {
		c.AgentToken = o.AgentToken
		m, err := c.AgentManifest(ctx)
		if err != nil {
			t.Fatalf("rogue agent's manifest: %v", err)
		}
		r.id = m.WorkspaceID
		region = firstRegion(t, m.Connection)
		r.ws, err = c.DialWebSocket(ctx, "/api/v2/agent/connect", url.Values{
			"version": {"rogue"}, "coordinate_version": {tether.CoordinateProtocolVersion},
		})
		if err != nil {
			t.Fatalf("rogue agent's coordination: %v", err)
		}
	} else {
		c.SessionToken = o.Session
		ci, err := c.ConnectionInfo(ctx)
		if err != nil {
			t.Fatalf("rogue's connection info: %v", err)
		}
		region = firstRegion(t, ci)
		r.ws, err = c.DialWebSocket(ctx, client.CoordinatePath(o.Owner, o.Name), url.Values{
			"version": {tether.CoordinateProtocolVersion}, "id": {r.id.String()},
		})
		if err != nil {
			t.Fatalf("rogue client's coordination: %v", err)
		}
	}
	r.ws.SetReadLimit(tether.MaxCoordinateMessage)
	done := make(chan struct{})
	t.Cleanup(func() {
		r.ws.CloseNow()
		<-done
	})
	go func() {
		defer close(done)
		r.readCoordination()
	}()
	n := &tether.Node{
		Key: r.node.Public(), DiscoKey: r.claimed, PreferredDERP: region,
		Addresses: []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(r.id), 128)}, AsOf: time.Now(),
	}
	if err := wsjson.Write(ctx, r.ws, tether.CoordinateRequest{Node: n}); err != nil {
		t.Fatalf("rogue's node: %v", err)
	}

	// The relay admits a key once the coordinator knows it: after the node.
	r.derp, err = derphttp.NewClient(r.node, srvURL+"/derp", func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.derp.Connect(ctx); err != nil {
		t.Fatalf("rogue's DERP connection: %v", err)
	}
	derpDone := make(chan struct{})
	t.Cleanup(func() {
		r.derp.Close()
		<-derpDone
	})
	go func() {
		defer close(derpDone)
		r.readDERP()
	}()
	r.await(t, "the UDP relay introduced", func() bool { return r.relay != nil })
	return r
}

func firstRegion(t *testing.T, ci tether.ConnectionInfo) int {
	t.Helper()
	if ci.DERPMap == nil {
		t.Fatal("no DERP map in the connection info")
	}
	for id := range ci.DERPMap.Regions {
		return id
	}
	t.Fatal("no DERP region")
	return 0
}

// readCoordination records what the coordinator says until the socket
// ends.
func (r *rogue) readCoordination() {
	for {
		var resp tether.CoordinateResponse
		err := wsjson.Read(context.Background(), r.ws, &resp)
		r.mu.Lock()
		if err != nil {
			r.closed = err
		}
		for _, u := range resp.Peers {
			switch {
			case u.Kind == tether.PeerNode && u.Relay:
				r.relayID, r.relay = u.ID, u.Node
			case u.Kind == tether.PeerNode:
				r.peers[u.ID] = u.Node
			default:
				delete(r.peers, u.ID)
			}
		}
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// readDERP keeps the relay's answers to allocation requests.
func (r *rogue) readDERP() {
	for {
		m, err := r.derp.Recv()
		if err != nil {
			return
		}
		p, ok := m.(derp.ReceivedPacket)
		if !ok {
			continue
		}
		r.mu.Lock()
		rl := r.relay
		r.mu.Unlock()
		if rl == nil {
			continue
		}
		if src, ok := disco.Source(p.Data); !ok || key.DiscoPublicFromRaw32(mem.B(src)) != rl.DiscoKey {
			continue
		}
		dm, ok := openDisco(p.Data, rl.DiscoKey, r.disco.Shared(rl.DiscoKey))
		if !ok {
			// Sealed for another disco key: an answer to a request
			// made in someone else's name.
			r.foreign.Add(1)
			continue
		}
		if a, ok := dm.(*disco.AllocateUDPRelayEndpointResponse); ok {
			r.mu.Lock()
			r.answers[a.Generation] = a
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}
}

// await waits until cond holds (under r.mu), for at most
// harness.StatusTimeout.
func (r *rogue) await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	timeout := time.NewTimer(harness.StatusTimeout)
	defer timeout.Stop()
	for {
		r.mu.Lock()
		ok, ch, closed := cond(), r.changed, r.closed
		r.mu.Unlock()
		if ok {
			return
		}
		if closed != nil {
			t.Fatalf("rogue %s: coordination ended (%v) before %s", r.id, closed, what)
		}
		select {
		case <-ch:
		case <-timeout.C:
			t.Fatalf("rogue %s: no %s within %s", r.id, what, harness.StatusTimeout)
		}
	}
}

// peer waits until the coordinator introduces the peer id, and returns its
// node.
func (r *rogue) peer(id uuid.UUID) *tether.Node {
	r.t.Helper()
	r.await(r.t, "peer "+id.String()+" introduced", func() bool { return r.peers[id] != nil })
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[id]
}

// allocRequest returns a sealed request, from the rogue's disco key, for
// an endpoint for pair: the packet to send the relay over DERP.
func (r *rogue) allocRequest(pair [2]key.DiscoPublic) (pkt []byte, gen uint32) {
	r.mu.Lock()
	rl := r.relay
	r.gen++
	gen = r.gen
	r.mu.Unlock()
	m := &disco.AllocateUDPRelayEndpointRequest{ClientDisco: pair, Generation: gen}
	return sealDisco(r.disco.Public(), r.disco.Shared(rl.DiscoKey), m), gen
}

// send sends pkt to the relay's node over DERP.
func (r *rogue) send(pkt []byte) {
	r.t.Helper()
	r.mu.Lock()
	rl := r.relay
	r.mu.Unlock()
	if err := r.derp.Send(rl.Key, pkt); err != nil {
		r.t.Errorf("rogue %s: send to the relay over DERP: %v", r.id, err)
	}
}

// answer waits up to wait for the relay's answer to generation gen.
func (r *rogue) answer(gen uint32, wait time.Duration) *disco.AllocateUDPRelayEndpointResponse {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		a, ch := r.answers[gen], r.changed
		r.mu.Unlock()
		if a != nil {
			return a
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil
		}
	}
}

// mustAllocate asks the relay for an endpoint for pair, which it must
// grant, and returns it.
func (r *rogue) mustAllocate(t testing.TB, pair [2]key.DiscoPublic) *disco.AllocateUDPRelayEndpointResponse {
	t.Helper()
	pkt, gen := r.allocRequest(pair)
	return r.mustBeAnswered(t, pkt, gen)
}

// mustBeAnswered sends the request pkt (of generation gen) until the relay
// answers it, as magicsock does: DERP drops a packet now and then under
// load.
func (r *rogue) mustBeAnswered(t testing.TB, pkt []byte, gen uint32) *disco.AllocateUDPRelayEndpointResponse {
	t.Helper()
	deadline := time.Now().Add(harness.StatusTimeout)
	for time.Now().Before(deadline) {
		r.send(pkt)
		if a := r.answer(gen, time.Second); a != nil {
			return a
		}
	}
	t.Fatalf("rogue %s: the relay did not allocate an endpoint for a pair it serves within %s", r.id, harness.StatusTimeout)
	return nil
}

// refusedWait is how long a test listens for an answer the relay must not
// give, after a barrier (an allowed request sent later) has been answered.
// The relay answers within milliseconds of a request it grants.
const refusedWait = 2 * time.Second

// listen waits refusedWait for something that must not happen, or until
// it happens.
func listen(happened func() bool) {
	for deadline := time.Now().Add(refusedWait); time.Now().Before(deadline) && !happened(); {
		time.Sleep(10 * time.Millisecond)
	}
}

// sealDisco frames a disco message as magicsock does: magic, the sender's
// disco key, the sealed message.
func sealDisco(from key.DiscoPublic, shared key.DiscoShared, m disco.Message) []byte {
	pkt := append([]byte(disco.Magic), from.AppendTo(nil)...)
	return append(pkt, shared.Seal(m.AppendMarshal(nil))...)
}

// openDisco opens a disco message from the given sender.
func openDisco(b []byte, from key.DiscoPublic, shared key.DiscoShared) (disco.Message, bool) {
	src, ok := disco.Source(b)
	if !ok || key.DiscoPublicFromRaw32(mem.B(src)) != from {
		return nil, false
	}
	clear, ok := shared.Open(b[len(disco.Magic)+key.DiscoPublicRawLen:])
	if !ok {
		return nil, false
	}
	m, err := disco.Parse(clear)
	return m, err == nil
}

// bindAnswered sends the relay, at ap, a request to bind the endpoint
// with the given VNI, from the disco key from (sealed with the rogue's
// own key), naming remote as the other party, and reports whether the
// relay answered with its challenge (the first step of a bind).
func (r *rogue) bindAnswered(ap netip.AddrPort, vni uint32, server, from, remote key.DiscoPublic) bool {
	r.t.Helper()
	shared := r.disco.Shared(server)
	bind := &disco.BindUDPRelayEndpoint{BindUDPRelayEndpointCommon: disco.BindUDPRelayEndpointCommon{
		VNI: vni, Generation: 1, RemoteKey: remote,
	}}
	var id packet.VirtualNetworkID
	id.Set(vni)
	pkt := make([]byte, packet.GeneveFixedHeaderLength)
	if err := (&packet.GeneveHeader{Protocol: packet.GeneveProtocolDisco, VNI: id, Control: true}).Encode(pkt); err != nil {
		r.t.Error(err)
		return false
	}
	pkt = append(pkt, sealDisco(from, shared, bind)...)
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		r.t.Error(err)
		return false
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for range 3 { // UDP on a loaded loopback may drop one
		conn.Write(pkt)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			var gh packet.GeneveHeader
			if gh.Decode(buf[:n]) != nil || !gh.Control {
				continue
			}
			if m, ok := openDisco(buf[packet.GeneveFixedHeaderLength:n], server, shared); ok {
				if _, ok := m.(*disco.BindUDPRelayEndpointChallenge); ok {
					return true
				}
			}
		}
	}
	return false
}

// TestUDPRelayServesOnlyIntroducedPairs attacks the server's UDP relay as
// a member, mallory, with her own workspace and her own (hand-written)
// agent, would attack the workspace of another user, alice. Mallory's
// client and agent ask the relay for endpoints for pairs with alice's
// agent or client, and for alice's own pair; replay alice's request; try
// to bind alice's endpoint under every key of the pair; claim alice's
// agent's disco key in a node, and its peer ID as a client; and, once
// mallory's session ends, replay a request the relay granted before. The
// relay must grant only the pairs of an agent and a client the
// coordinator bound to it, asked by one of them, while both are there,
// and no claim may take alice's pair from her. The same rogue code,
// granted alice's pair and mallory's own, shows that every refused
// request would have been answered had it been allowed.
//
// Each check has its case: the relay's pair rule (peerrelay's allowed),
// its forgetting of a peer that left (the coordinator's disconnected
// update), its lookups by requester rather than by disco key, and the
// server's refusal of a client ID that is a workspace's. Removing any one
// fails the test. Mallory's foreign pairs, replays and binds are refused
// by the library as well (magicsock checks the sender against the pair
// and its disco key; the relay server needs the pair's private keys to
// bind).
func TestUDPRelayServesOnlyIntroducedPairs(t *testing.T) {
	env := startWorkspace(t)
	srv, alice := env.Server, env.User
	mallory := here.Member(t, srv.URL, alice, "mallory")
	mToken, _ := mallory.CreateWorkspace("mws")

	// Alice's own hand-written client of dev: the control, and the source
	// of her keys (which an attacker might learn).
	aliceClient := startRogue(t, srv.URL, rogueOptions{Session: alice.Token(), Owner: harness.AdminName, Name: "dev"})
	devID := workspaceID(t, srv.URL, alice, "dev")
	devAgent := aliceClient.peer(devID)
	relayAddrs := func(a *disco.AllocateUDPRelayEndpointResponse) []netip.AddrPort { return a.AddrPorts }

	// Mallory's agent (her workspace's token) and her client of it.
	mAgent := startRogue(t, srv.URL, rogueOptions{AgentToken: mToken})
	mClient := startRogue(t, srv.URL, rogueOptions{Session: mallory.Token(), Owner: "mallory", Name: "mws"})
	mClient.peer(mAgent.id)

	// Controls: the relay serves each user's own pair, whichever side asks.
	aliceEP := aliceClient.mustAllocate(t, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
	if len(relayAddrs(aliceEP)) == 0 || !slices.ContainsFunc(aliceEP.AddrPorts, func(ap netip.AddrPort) bool { return ap.Addr().IsLoopback() }) {
		t.Fatalf("the relay's endpoint for alice has addresses %v, want its loopback one", aliceEP.AddrPorts)
	}
	mallory1 := [2]key.DiscoPublic{mClient.disco.Public(), mAgent.disco.Public()}
	mGrantedPkt, mGen := mClient.allocRequest(mallory1)
	mClient.mustBeAnswered(t, mGrantedPkt, mGen)
	mAgent.mustAllocate(t, [2]key.DiscoPublic{mAgent.disco.Public(), mClient.disco.Public()})

	// refused sends each request from r, then a barrier (a request the
	// relay grants, from a rogue still served), and checks that nothing
	// but the barrier is answered.
	refused := func(t *testing.T, r *rogue, pkts []func() ([]byte, uint32), barrier *rogue, barrierPair [2]key.DiscoPublic) {
		t.Helper()
		var gens []uint32
		for _, mk := range pkts {
			pkt, gen := mk()
			gens = append(gens, gen)
			r.send(pkt)
		}
		barrier.mustAllocate(t, barrierPair)
		deadline := time.Now().Add(refusedWait)
		for _, gen := range gens {
			if a := r.answer(gen, time.Until(deadline)); a != nil {
				t.Errorf("the relay allocated endpoint VNI %d at %v", a.VNI, a.AddrPorts)
			}
		}
	}
	ask := func(r *rogue, pair [2]key.DiscoPublic) func() ([]byte, uint32) {
		return func() ([]byte, uint32) { return r.allocRequest(pair) }
	}

	t.Run("mallory's client asks for alice's agent", func(t *testing.T) {
		refused(t, mClient, []func() ([]byte, uint32){
			ask(mClient, [2]key.DiscoPublic{mClient.disco.Public(), devAgent.DiscoKey}),
			ask(mClient, [2]key.DiscoPublic{devAgent.DiscoKey, mClient.disco.Public()}),
		}, mClient, mallory1)
	})
	t.Run("mallory's agent asks for alice's client", func(t *testing.T) {
		refused(t, mAgent, []func() ([]byte, uint32){
			ask(mAgent, [2]key.DiscoPublic{mAgent.disco.Public(), aliceClient.disco.Public()}),
		}, mAgent, mallory1)
	})
	t.Run("mallory asks for alice's pair", func(t *testing.T) {
		refused(t, mClient, []func() ([]byte, uint32){
			ask(mClient, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey}),
		}, mClient, mallory1)
	})
	t.Run("mallory replays alice's request", func(t *testing.T) {
		// Alice's sealed request, as it crossed DERP, sent by mallory.
		// An answer would come to mallory, sealed for alice's key.
		foreign := mClient.foreign.Load()
		pkt, _ := aliceClient.allocRequest([2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
		mClient.send(pkt)
		mClient.mustAllocate(t, mallory1)
		listen(func() bool { return mClient.foreign.Load() > foreign })
		if n := mClient.foreign.Load() - foreign; n > 0 {
			t.Errorf("alice's request replayed by mallory was answered (%d answers sealed for alice)", n)
		}
	})
	t.Run("mallory binds alice's endpoint", func(t *testing.T) {
		var ap netip.AddrPort
		for _, a := range aliceEP.AddrPorts {
			if a.Addr().IsLoopback() {
				ap = a
			}
		}
		// The control: alice's client may bind it.
		if !aliceClient.bindAnswered(ap, aliceEP.VNI, aliceEP.ServerDisco, aliceClient.disco.Public(), devAgent.DiscoKey) {
			t.Fatalf("the relay did not answer alice's bind of her own endpoint VNI %d at %s", aliceEP.VNI, ap)
		}
		// Mallory knows the VNI (they are handed out in order) and every
		// public key, but holds neither private disco key of the pair.
		for _, tc := range []struct {
			name   string
			from   key.DiscoPublic
			remote key.DiscoPublic
		}{
			{"as herself", mClient.disco.Public(), devAgent.DiscoKey},
			{"as alice's client", aliceClient.disco.Public(), devAgent.DiscoKey},
			{"as alice's agent", devAgent.DiscoKey, aliceClient.disco.Public()},
		} {
			if mClient.bindAnswered(ap, aliceEP.VNI, aliceEP.ServerDisco, tc.from, tc.remote) {
				t.Errorf("the relay answered mallory binding alice's endpoint %s", tc.name)
			}
		}
	})
	t.Run("forged disco key", func(t *testing.T) {
		// Mallory's second client claims alice's agent's disco key in its
		// node. It cannot speak for that key, and it must not take
		// alice's pair from her: alice's allocations go on being granted.
		forged := startRogue(t, srv.URL, rogueOptions{Session: mallory.Token(), Owner: "mallory", Name: "mws", Disco: devAgent.DiscoKey})
		forged.peer(mAgent.id)
		// In the agent's name, but sealed with its own key.
		pkt, _ := forged.allocRequest([2]key.DiscoPublic{devAgent.DiscoKey, mAgent.disco.Public()})
		copy(pkt[len(disco.Magic):], devAgent.DiscoKey.AppendTo(nil))
		forged.send(pkt)
		// The relay hears of the forged node a moment after the
		// coordinator: alice asks again for a while.
		for deadline := time.Now().Add(refusedWait); time.Now().Before(deadline); {
			aliceClient.mustAllocate(t, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
		}
		if n := forged.foreign.Load(); n > 0 {
			t.Errorf("a client with a forged disco key got %d answers", n)
		}
	})
	t.Run("mallory's client takes alice's agent's ID", func(t *testing.T) {
		// A client names its own peer ID. With the ID of alice's agent, it
		// would stand in the agent's place at the relay, which knows peers
		// by ID: the server refuses it.
		ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
		defer cancel()
		c, err := client.New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		c.SessionToken = mallory.Token()
		ws, err := c.DialWebSocket(ctx, client.CoordinatePath("mallory", "mws"), url.Values{
			"version": {tether.CoordinateProtocolVersion}, "id": {devID.String()},
		})
		if err == nil {
			ws.CloseNow()
			t.Fatal("the server took a client's coordination under the ID of another user's agent")
		}
		if tether.ErrorCode(err) != tether.EINVALID {
			t.Errorf("refused with %v, want an invalid request", err)
		}
		// Alice's pair is still served.
		aliceClient.mustAllocate(t, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
	})
	t.Run("after mallory's session ends", func(t *testing.T) {
		// Mallory signed out everywhere: her client's coordination is
		// revoked, and the relay forgets it. Her DERP connection lives on
		// for the relay's grace period; a request the relay granted
		// before, replayed over it, must go unanswered.
		alice.Must("users", "logout", "mallory")
		mClient.await(t, "the end of mallory's coordination", func() bool { return mClient.closed != nil })
		if got := websocket.CloseStatus(mClient.closed); got != tether.CloseAccessRevoked {
			t.Errorf("mallory's coordination ended with %v, want close status %d", mClient.closed, tether.CloseAccessRevoked)
		}
		mAgent.await(t, "mallory's client gone from her agent", func() bool { return mAgent.peers[mClient.id] == nil })
		mClient.mu.Lock()
		delete(mClient.answers, mGen) // the answer it had before
		mClient.mu.Unlock()
		mClient.send(mGrantedPkt)
		pkt, gen := mClient.allocRequest(mallory1)
		mClient.send(pkt)
		aliceClient.mustAllocate(t, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
		deadline := time.Now().Add(refusedWait)
		for _, g := range []uint32{mGen, gen} {
			if a := mClient.answer(g, time.Until(deadline)); a != nil {
				t.Errorf("after mallory's session ended, the relay answered her request (generation %d): VNI %d", g, a.VNI)
			}
		}
		// Her agent, still connected, gets nothing for the pair either.
		pkt, gen = mAgent.allocRequest(mallory1)
		mAgent.send(pkt)
		aliceClient.mustAllocate(t, [2]key.DiscoPublic{aliceClient.disco.Public(), devAgent.DiscoKey})
		if a := mAgent.answer(gen, refusedWait); a != nil {
			t.Errorf("after mallory's session ended, the relay answered her agent for the pair with her client: VNI %d", a.VNI)
		}
	})
}

// workspaceID returns the ID of u's workspace name (its agent's peer ID).
func workspaceID(t *testing.T, srvURL string, u *harness.User, name string) uuid.UUID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
	defer cancel()
	c, err := client.New(srvURL)
	if err != nil {
		t.Fatal(err)
	}
	c.SessionToken = u.Token()
	w, err := c.Workspace(ctx, "me", name)
	if err != nil {
		t.Fatalf("workspace %s: %v", name, err)
	}
	return w.ID
}
