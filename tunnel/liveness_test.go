package tunnel

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"
)

// goneRecorder collects what a Conn's peer-gone callback says.
type goneRecorder struct {
	mu   sync.Mutex
	why  map[uuid.UUID]error
	told chan struct{} // closed at the first call
}

func recordGone(c *Conn) *goneRecorder {
	r := &goneRecorder{why: map[uuid.UUID]error{}, told: make(chan struct{})}
	c.SetPeerGoneCallback(func(id uuid.UUID, why error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.why) == 0 {
			close(r.told)
		}
		r.why[id] = why
	})
	return r
}

func (r *goneRecorder) get(id uuid.UUID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.why[id]
}

// deadPair connects b to an echo server on a, then makes a fall silent as
// a killed process would: it forgets b (the goodbye it sends cannot reach
// b any more) and stops answering b's pings. b's connection is returned.
func deadPair(t *testing.T, dm *tailcfg.DERPMap, optsB Options) (a, b *Conn, conn net.Conn) {
	t.Helper()
	a, b = pair(t, dm, Options{}, optsB)
	ctx := testContext(t)
	conn = dialEcho(t, ctx, b, a, 22)
	if err := echoOnce(conn, "alive", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	a.SetNodeCallback(nil)
	b.SetNodeCallback(nil)
	a.RemovePeer(b.ID())
	return a, b, conn
}

// readEnds reports whether a read on conn ends (with an error) within d.
func readEnds(conn net.Conn, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn.Read(make([]byte, 1))
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		conn.Close() // ends the read
		<-done
		return false
	}
}

// TestPeerRestartedEndsConnections checks that a peer that comes back with
// a new key (a new process) ends the connections with the old one at once:
// nothing else would, as the old process sends nothing more and its
// connections are idle.
func TestPeerRestartedEndsConnections(t *testing.T) {
	dm := newDERP(t, derpOptions{})
	a, b, conn := deadPair(t, dm, Options{})
	gone := recordGone(b)

	// a comes back as a new process: same ID, new keys.
	a2 := newConn(t, "a2", Options{ID: a.ID(), DERPMap: dm})
	if err := b.UpsertPeer(a.ID(), awaitNode(t, testContext(t), a2)); err != nil {
		t.Fatal(err)
	}
	if !readEnds(conn, testTimeout) {
		t.Fatal("the connection with the old process stayed open")
	}
	if err := gone.get(a.ID()); !errors.Is(err, ErrPeerRestarted) {
		t.Errorf("peer-gone callback said %v, want ErrPeerRestarted", err)
	}
}

// TestLostPeerUnreachable checks that a peer the coordinator lost and that
// does not answer has its connections ended after the grace period.
func TestLostPeerUnreachable(t *testing.T) {
	const grace = time.Second
	a, b, conn := deadPair(t, newDERP(t, derpOptions{}), Options{LostPeerGrace: grace})
	gone := recordGone(b)
	lost := time.Now()
	b.SetPeerLost(a.ID(), true)
	if !readEnds(conn, testTimeout) {
		t.Fatal("the connection with a lost, silent peer stayed open")
	}
	if d := time.Since(lost); d < grace {
		t.Errorf("ended after %v, before the grace period of %v", d, grace)
	}
	if err := gone.get(a.ID()); !errors.Is(err, ErrPeerUnreachable) {
		t.Errorf("peer-gone callback said %v, want ErrPeerUnreachable", err)
	}
	// The peer stays: the coordinator may reintroduce it.
	if _, ok := b.lookupPeer(a.Addr()); !ok {
		t.Error("the lost peer was removed")
	}
}

// TestLostPeerKept checks the cases where a lost peer's connections must
// stay: it still answers (only its coordination broke), or the lost state
// was taken back (our own coordination broke, so nothing is known).
func TestLostPeerKept(t *testing.T) {
	const grace = 500 * time.Millisecond
	t.Run("answering", func(t *testing.T) {
		a, b := pair(t, newDERP(t, derpOptions{}), Options{}, Options{LostPeerGrace: grace})
		ctx := testContext(t)
		conn := dialEcho(t, ctx, b, a, 22)
		gone := recordGone(b)
		b.SetPeerLost(a.ID(), true)
		if readEnds(conn, 4*grace) {
			t.Fatal("the connection with a lost peer that answers pings was ended")
		}
		select {
		case <-gone.told:
			t.Errorf("peer-gone callback called: %v", gone.get(a.ID()))
		default:
		}
	})
	t.Run("taken back", func(t *testing.T) {
		a, b, conn := deadPair(t, newDERP(t, derpOptions{}), Options{LostPeerGrace: grace})
		b.SetPeerLost(a.ID(), true)
		b.SetPeerLost(a.ID(), false)
		if readEnds(conn, 4*grace) {
			t.Fatal("the connection was ended after the lost state was taken back")
		}
	})
}
