package replica_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"
	"tailscale.com/types/key"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/internal/pgtest"
	"github.com/tetherdev/tether/replica"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds each wait for a condition, as pgtest.Timeout bounds
// each round trip to the database.
const testTimeout = pgtest.Timeout

// Heartbeat intervals. fast makes a stalled replica gone within half a
// second, for the tests of that; steady is for the others, slow enough that
// a loaded machine does not delay a beat past the deadline and have a
// replica reported gone that is not.
const (
	fast   = 100 * time.Millisecond
	steady = 500 * time.Millisecond
)

// adminCount runs a count query on the test database.
func adminCount(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pgtest.Connect(t).QueryRow(pgtest.Context(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// recorder keeps what a Manager's callbacks report, and lets a test wait
// until it has seen something.
type recorder struct {
	mu      sync.Mutex
	peers   [][]replica.Info // every OnPeers call, in order
	gone    []replica.Info
	goneAt  []time.Time // when each OnGone came
	events  []coordinator.Event
	resyncs int           // OnResync calls
	changed chan struct{} // signalled (without blocking) at every callback
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// options are those of a new replica on dbURL.
func options(dbURL string, interval time.Duration) replica.Options {
	id := uuid.New()
	name := "replica-" + id.String()[:8]
	return replica.Options{
		URL:               dbURL,
		Self:              replica.Info{ID: id, RelayURL: "http://" + name + ":3000", Hostname: name},
		HeartbeatInterval: interval,
	}
}

// handlers record what the Manager reports.
func (r *recorder) handlers() replica.Handlers {
	return replica.Handlers{
		OnEvent: func(ev coordinator.Event) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
			r.signal()
		},
		OnResync: func() {
			r.mu.Lock()
			r.resyncs++
			r.mu.Unlock()
			r.signal()
		},
		OnPeers: func(live []replica.Info) {
			r.mu.Lock()
			r.peers = append(r.peers, live)
			r.mu.Unlock()
			r.signal()
		},
		OnGone: func(g replica.Info) {
			r.mu.Lock()
			r.gone = append(r.gone, g)
			r.goneAt = append(r.goneAt, time.Now())
			r.mu.Unlock()
			r.signal()
		},
	}
}

// waitFor waits until cond, checked under the recorder's lock, holds.
func (r *recorder) waitFor(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// lastPeers returns the IDs of the latest OnPeers call; the caller holds
// r.mu.
func (r *recorder) lastPeersLocked() []uuid.UUID {
	if len(r.peers) == 0 {
		return nil
	}
	var ids []uuid.UUID
	for _, p := range r.peers[len(r.peers)-1] {
		ids = append(ids, p.ID)
	}
	return ids
}

// member is a Manager and what it reported.
type member struct {
	*replica.Manager
	rec  *recorder
	self replica.Info
}

// start opens a Manager on dbURL and joins it, closed when the test ends.
func start(t *testing.T, dbURL string, interval time.Duration) *member {
	t.Helper()
	m := open(t, dbURL, interval)
	if err := m.Join(pgtest.Context(t), m.rec.handlers()); err != nil {
		t.Fatal(err)
	}
	return m
}

// open opens a Manager on dbURL, closed when the test ends.
func open(t *testing.T, dbURL string, interval time.Duration) *member {
	t.Helper()
	o := options(dbURL, interval)
	m, err := replica.Open(pgtest.Context(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return &member{Manager: m, rec: newRecorder(), self: o.Self}
}

// sortedIDs returns the members' IDs in the order OnPeers lists them.
func sortedIDs(ms ...*member) []uuid.UUID {
	var ids []uuid.UUID
	for _, m := range ms {
		ids = append(ids, m.self.ID)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return ids
}

// waitForPeers waits until m's latest OnPeers lists exactly others.
func (m *member) waitForPeers(t *testing.T, others ...*member) {
	t.Helper()
	want := sortedIDs(others...)
	m.rec.waitFor(t, fmt.Sprintf("%s to see %d peers", m.self.Hostname, len(others)), func(r *recorder) bool {
		return slices.Equal(r.lastPeersLocked(), want)
	})
}

func TestPeersSeeEachOther(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	a := start(t, dbURL, steady)
	// OnPeers has been called once Join returns, even with nobody there.
	a.rec.mu.Lock()
	if len(a.rec.peers) != 1 || len(a.rec.peers[0]) != 0 {
		t.Errorf("OnPeers calls during the first replica's Join: %v; want one, empty", a.rec.peers)
	}
	a.rec.mu.Unlock()

	b := start(t, dbURL, steady)
	// The second sees the first from Join on.
	if got := b.Peers(); len(got) != 1 || got[0].ID != a.self.ID {
		t.Fatalf("second replica's Peers after Join: %+v; want the first", got)
	}
	a.waitForPeers(t, b)

	c := start(t, dbURL, steady)
	a.waitForPeers(t, b, c)
	b.waitForPeers(t, a, c)
	c.waitForPeers(t, a, b)

	// What a peer is told about another is what that one registered.
	for _, p := range a.Peers() {
		want := b.self
		if p.ID == c.self.ID {
			want = c.self
		}
		if p.RelayURL != want.RelayURL || p.Hostname != want.Hostname || p.StartedAt.IsZero() || p.LastSeenAt.Before(p.StartedAt) {
			t.Errorf("peer %+v; want relay %s and host %s, with times", p, want.RelayURL, want.Hostname)
		}
	}
	for _, m := range []*member{a, b, c} {
		m.rec.mu.Lock()
		if len(m.rec.gone) != 0 {
			t.Errorf("%s reported replicas gone: %+v", m.self.Hostname, m.rec.gone)
		}
		m.rec.mu.Unlock()
	}
}

// agentNode is a small valid node event; seq goes into PreferredDERP, so a
// receiver can check the order.
func agentNode(agent uuid.UUID, seq int) coordinator.Event {
	return coordinator.Event{Kind: coordinator.EventAgentNode, AgentID: agent, Node: &tether.Node{
		Key:           key.NewNode().Public(),
		DiscoKey:      key.NewDisco().Public(),
		Addresses:     []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(agent), 128)},
		PreferredDERP: seq,
		AsOf:          time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}}
}

func seqs(evs []coordinator.Event) []int {
	var s []int
	for _, ev := range evs {
		if ev.Node != nil {
			s = append(s, ev.Node.PreferredDERP)
		} else {
			s = append(s, -1)
		}
	}
	return s
}

func TestEventsReachTheOthersInOrder(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	a, b, c := start(t, dbURL, steady), start(t, dbURL, steady), start(t, dbURL, steady)
	ctx := pgtest.Context(t)
	agent := uuid.New()
	const n = 200
	for i := range n {
		if err := a.Publish(ctx, agentNode(agent, i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*member{b, c} {
		m.rec.waitFor(t, fmt.Sprintf("%d events at %s", n, m.self.Hostname), func(r *recorder) bool { return len(r.events) >= n })
		m.rec.mu.Lock()
		got := seqs(m.rec.events)
		for i, ev := range m.rec.events {
			if ev.Replica != a.self.ID || ev.AgentID != agent || ev.Kind != coordinator.EventAgentNode || got[i] != i+1 {
				t.Errorf("%s: event %d is %+v; want agent_node %d from %s", m.self.Hostname, i, ev, i+1, a.self.ID)
				break
			}
		}
		if len(got) != n {
			t.Errorf("%s received %d events; want %d", m.self.Hostname, len(got), n)
		}
		m.rec.mu.Unlock()
	}

	// A publisher does not hear itself. Notifications reach each listener
	// in commit order, so once a has B's marker, published after, it has
	// seen (and dropped) its own 200.
	if err := b.Publish(ctx, agentNode(agent, 1000)); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, "the marker at a", func(r *recorder) bool { return len(r.events) > 0 })
	a.rec.mu.Lock()
	if got := seqs(a.rec.events); !slices.Equal(got, []int{1000}) {
		t.Errorf("the publisher received %v; want only the other replica's marker 1000", got)
	}
	a.rec.mu.Unlock()
}

// TestOpenThenJoin: an opened replica can publish (it is already a
// coordinator's Bus) but is no member until Join: it is not registered and
// hears nothing. Join makes it one, once; Close works either way.
func TestOpenThenJoin(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	ctx := pgtest.Context(t)
	a := start(t, dbURL, steady)
	b := open(t, dbURL, steady)
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_replicas`); n != 1 {
		t.Errorf("%d replicas registered with one joined and one opened; want 1", n)
	}
	agent := uuid.New()
	if err := b.Publish(ctx, agentNode(agent, 1)); err != nil {
		t.Fatalf("Publish before Join: %v", err)
	}
	a.rec.waitFor(t, "the event of the replica not yet joined", func(r *recorder) bool { return len(r.events) == 1 })

	if err := b.Join(ctx, b.rec.handlers()); err != nil {
		t.Fatal(err)
	}
	if got := b.Peers(); len(got) != 1 || got[0].ID != a.self.ID {
		t.Fatalf("Peers after Join: %+v; want the first replica", got)
	}
	a.waitForPeers(t, b)
	if err := a.Publish(ctx, agentNode(agent, 2)); err != nil {
		t.Fatal(err)
	}
	b.rec.waitFor(t, "an event after Join", func(r *recorder) bool { return len(r.events) == 1 })
	if err := b.Join(ctx, b.rec.handlers()); err == nil {
		t.Error("a second Join succeeded")
	}

	c := open(t, dbURL, steady)
	if err := c.Close(); err != nil {
		t.Fatalf("Close without Join: %v", err)
	}
	if err := c.Join(ctx, c.rec.handlers()); err != replica.ErrClosed {
		t.Errorf("Join after Close: %v; want ErrClosed", err)
	}
}

func TestPublishChecksTheReplica(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	a := start(t, dbURL, steady)
	ev := agentNode(uuid.New(), 1)
	ev.Replica = uuid.New()
	if err := a.Publish(pgtest.Context(t), ev); err == nil {
		t.Fatal("published an event of another replica")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(pgtest.Context(t), agentNode(uuid.New(), 1)); err != replica.ErrClosed {
		t.Fatalf("Publish after Close: %v; want ErrClosed", err)
	}
}

// bigNode is a valid node whose JSON is over 8 KB: every endpoint and
// latency the limits allow, with long addresses and region keys.
func bigNode(agent uuid.UUID, seq int) coordinator.Event {
	ev := agentNode(agent, seq)
	for i := range tether.MaxNodeEndpoints {
		ev.Node.Endpoints = append(ev.Node.Endpoints,
			netip.MustParseAddrPort(fmt.Sprintf("[2001:db8:1111:2222:3333:4444:5555:%x]:%d", 0x1000+i, 60000+i)))
	}
	ev.Node.DERPLatency = map[string]float64{}
	for i := range tether.MaxNodeDERPRegions {
		ev.Node.DERPLatency[fmt.Sprintf("region-%025d", i)] = 0.001234 * float64(i+1)
	}
	return ev
}

func TestBigEventsGoThroughTheTable(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	a, b := start(t, dbURL, steady), start(t, dbURL, steady)
	ctx := pgtest.Context(t)
	agent := uuid.New()
	big := bigNode(agent, 1)
	if err := big.Node.Validate(agent); err != nil {
		t.Fatalf("the big node is not valid: %v", err)
	}
	big.Replica = a.self.ID
	bigJSON, _ := json.Marshal(big)
	if len(bigJSON) <= 8<<10 {
		t.Fatalf("the big event is only %d bytes", len(bigJSON))
	}
	// Big, small, big: the order holds across the two paths.
	for _, ev := range []coordinator.Event{big, agentNode(agent, 2), bigNode(agent, 3)} {
		if err := a.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	b.rec.waitFor(t, "3 events", func(r *recorder) bool { return len(r.events) >= 3 })
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	if got := seqs(b.rec.events); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("received %v; want 1 2 3", got)
	}
	if gotJSON, _ := json.Marshal(b.rec.events[0]); string(gotJSON) != string(bigJSON) {
		t.Errorf("the big event changed on the way:\n got %s\nwant %s", gotJSON, bigJSON)
	}
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_coord_events`); n != 2 {
		t.Errorf("%d rows in tether_coord_events; want 2, one per big event", n)
	}
}

func TestClosedReplicaIsGone(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	a, b, c := start(t, dbURL, steady), start(t, dbURL, steady), start(t, dbURL, steady)
	a.waitForPeers(t, b, c)
	b.waitForPeers(t, a, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_replicas WHERE id = $1`, c.self.ID); n != 0 {
		t.Errorf("the closed replica's row is still there")
	}
	for _, m := range []*member{a, b} {
		m.rec.waitFor(t, "c gone at "+m.self.Hostname, func(r *recorder) bool { return len(r.gone) > 0 })
		m.waitForPeers(t, other(a, b, m))
	}
	// Gone once: a later beat does not report it again. Wait for a's view
	// of b to be three beats newer than the moment c was reported.
	a.rec.mu.Lock()
	reported := a.rec.peers[len(a.rec.peers)-1][0].LastSeenAt
	a.rec.mu.Unlock()
	waitUntil(t, "three more heartbeats", func() bool {
		p := a.Peers()
		return len(p) == 1 && p[0].LastSeenAt.Sub(reported) >= 3*steady
	})
	for _, m := range []*member{a, b} {
		m.rec.mu.Lock()
		if len(m.rec.gone) != 1 || m.rec.gone[0].ID != c.self.ID || m.rec.gone[0].Hostname != c.self.Hostname {
			t.Errorf("%s reported gone: %+v; want c once", m.self.Hostname, m.rec.gone)
		}
		m.rec.mu.Unlock()
	}
}

func other(a, b, not *member) *member {
	if not == a {
		return b
	}
	return a
}

// waitUntil polls cond until it holds: for conditions no callback signals.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStalledReplicaIsGone(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	a, b := start(t, dbURL, fast), start(t, dbURL, fast)
	a.waitForPeers(t, b)
	b.StopHeartbeat()
	stopped := time.Now()
	a.rec.waitFor(t, "b gone", func(r *recorder) bool { return len(r.gone) > 0 })
	a.rec.mu.Lock()
	gone, goneAt := a.rec.gone[0], a.rec.goneAt[0]
	a.rec.mu.Unlock()
	t.Logf("b reported gone %v after its heartbeat stopped (deadline %v)", goneAt.Sub(stopped), replica.MissedHeartbeats*fast)
	if gone.ID != b.self.ID {
		t.Errorf("gone: %+v; want b", gone)
	}
	// Not before its deadline, counted from b's last beat. The test
	// database runs on this machine (.ci/run starts it), so the clock
	// that wrote last_seen_at is ours.
	var last time.Time
	if err := pgtest.Connect(t).QueryRow(pgtest.Context(t), `SELECT last_seen_at FROM `+schema+`.tether_replicas WHERE id = $1`,
		b.self.ID).Scan(&last); err != nil {
		t.Fatalf("the stalled replica's row: %v; want it still there", err)
	}
	if early := last.Add(replica.MissedHeartbeats * fast).Sub(goneAt); early > 0 {
		t.Errorf("b reported gone %v before its deadline", early)
	}
	a.waitForPeers(t)
}

func TestMeshKeyIsShared(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	// Started together, on an empty schema: one creates the tables and
	// the key, the others read them.
	const n = 3
	ms := make([]*replica.Manager, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			ms[i], err = replica.Open(pgtest.Context(t), options(dbURL, steady))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, m := range ms {
		if m != nil {
			t.Cleanup(func() { m.Close() })
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	k := ms[0].MeshKey()
	if b, err := hex.DecodeString(k); err != nil || len(k) != 64 || len(b) != 32 {
		t.Fatalf("mesh key %q is not 64 hex characters", k)
	}
	for _, m := range ms[1:] {
		if m.MeshKey() != k {
			t.Fatalf("mesh keys differ: %s and %s", k, m.MeshKey())
		}
	}
	// It lasts: a replica started later, with all others gone, has it.
	for _, m := range ms {
		m.Close()
	}
	if later := start(t, dbURL, steady); later.MeshKey() != k {
		t.Fatalf("mesh key changed after a restart: %s, was %s", later.MeshKey(), k)
	}
	if other, _ := pgtest.NewSchema(t); start(t, other, steady).MeshKey() == k {
		t.Fatal("another deployment's schema has the same mesh key")
	}
}

func TestListenerReconnects(t *testing.T) {
	dbURL, _ := pgtest.NewSchema(t)
	a, b := start(t, dbURL, steady), start(t, dbURL, steady)
	ctx := pgtest.Context(t)
	pid := b.ListenerPID()
	var ok bool
	if err := pgtest.Connect(t).QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int(pid)).Scan(&ok); err != nil || !ok {
		t.Fatalf("terminate b's listener %d: %v, %v", pid, ok, err)
	}
	// Events published while b reconnects are lost; keep publishing until
	// one gets through.
	agent := uuid.New()
	for seq := 1; ; seq++ {
		if err := a.Publish(ctx, agentNode(agent, seq)); err != nil {
			t.Fatal(err)
		}
		b.rec.mu.Lock()
		got := len(b.rec.events)
		b.rec.mu.Unlock()
		if got > 0 {
			break
		}
		select {
		case <-b.rec.changed:
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("b never received an event after its listener was terminated")
		}
	}
	if b.ListenerPID() == pid {
		t.Errorf("b still listens on the terminated backend %d", pid)
	}
	// b said it may have missed events, once, and a never did.
	b.rec.mu.Lock()
	bResyncs := b.rec.resyncs
	b.rec.mu.Unlock()
	a.rec.mu.Lock()
	aResyncs := a.rec.resyncs
	a.rec.mu.Unlock()
	if bResyncs != 1 || aResyncs != 0 {
		t.Errorf("OnResync calls: b %d, a %d; want 1 and 0", bResyncs, aResyncs)
	}
}

func TestDeploymentsInOtherSchemasAreApart(t *testing.T) {
	url1, _ := pgtest.NewSchema(t)
	url2, _ := pgtest.NewSchema(t)
	a1, a2, b2 := start(t, url1, steady), start(t, url2, steady), start(t, url2, steady)
	ctx := pgtest.Context(t)
	if err := a1.Publish(ctx, agentNode(uuid.New(), 1)); err != nil {
		t.Fatal(err)
	}
	// Notifications reach a listener in commit order, whatever their
	// channel: once a2 has b2's marker, a1's event would have come first.
	if err := b2.Publish(ctx, agentNode(uuid.New(), 2)); err != nil {
		t.Fatal(err)
	}
	a2.rec.waitFor(t, "b2's marker", func(r *recorder) bool { return len(r.events) > 0 })
	a2.rec.mu.Lock()
	if got := seqs(a2.rec.events); !slices.Equal(got, []int{2}) {
		t.Errorf("a2 received %v; want only b2's 2", got)
	}
	a2.rec.mu.Unlock()
	if p := a1.Peers(); len(p) != 0 {
		t.Errorf("a1 sees replicas of another schema: %+v", p)
	}
}

func TestCleanUpForgetsOldRows(t *testing.T) {
	dbURL, schema := pgtest.NewSchema(t)
	a := start(t, dbURL, steady)
	old := uuid.New()
	pgtest.Exec(t, `INSERT INTO `+schema+`.tether_replicas (id, relay_url, hostname, started_at, last_seen_at)
		VALUES ($1, '', 'old', now() - $2 * interval '1 second', now() - $2 * interval '1 second')`,
		old, int((replica.ForgetAfter + time.Minute).Seconds()))
	pgtest.Exec(t, `INSERT INTO `+schema+`.tether_coord_events (payload, created_at) VALUES ('{}', now() - $1 * interval '1 second'), ('{}', now())`,
		int((replica.EventRetention + time.Minute).Seconds()))
	if err := a.CleanUp(pgtest.Context(t)); err != nil {
		t.Fatal(err)
	}
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_replicas WHERE id = $1`, old); n != 0 {
		t.Errorf("the long-gone replica's row is still there")
	}
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_replicas`); n != 1 {
		t.Errorf("%d replica rows; want 1, the live one", n)
	}
	if n := adminCount(t, `SELECT count(*) FROM `+schema+`.tether_coord_events`); n != 1 {
		t.Errorf("%d event rows; want 1, the recent one", n)
	}
}

func TestWrongPasswordIsNotEchoed(t *testing.T) {
	pgtest.CheckWrongPassword(t, func(ctx context.Context, dbURL string) (io.Closer, error) {
		return replica.Open(ctx, options(dbURL, steady))
	})
}

// TestBadOptions needs no database: none of these reaches one.
func TestBadOptions(t *testing.T) {
	pgtest.CheckBadURLs(t, func(ctx context.Context, dbURL string) (io.Closer, error) {
		return replica.Open(ctx, replica.Options{URL: dbURL, Self: replica.Info{ID: uuid.New()}})
	})
	t.Run("no ID", func(t *testing.T) {
		const secret = "s3cret-pw-d0nt-show"
		dbURL := "postgres://tether:" + secret + "@" + pgtest.ClosedAddr(t) + "/tether"
		_, err := replica.Open(pgtest.Context(t), replica.Options{URL: dbURL})
		if err == nil {
			t.Fatal("Open succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("the error repeats the password: %v", err)
		}
		if !strings.Contains(err.Error(), "Self.ID is required") {
			t.Fatalf("got %v, want it to say that Self.ID is required", err)
		}
	})
}
