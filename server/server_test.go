package server

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"tailscale.com/tailcfg"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/store/sqlite"
)

// TestNewRequires: New names each required option that is missing.
func TestNewRequires(t *testing.T) {
	db, err := sqlite.Open(testContext(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	co := coordinator.New(coordinator.Options{})
	defer co.Close()
	full := func() Options {
		return Options{Store: db, AccessURL: &url.URL{Scheme: "http", Host: "tether.test"},
			DERPMap: &tailcfg.DERPMap{}, Coordinator: co}
	}
	tests := []struct {
		name  string
		unset func(*Options)
		want  string
	}{
		{"Store", func(o *Options) { o.Store = nil }, "Store is required"},
		{"AccessURL", func(o *Options) { o.AccessURL = nil }, "AccessURL is required"},
		{"DERPMap", func(o *Options) { o.DERPMap = nil }, "DERPMap is required"},
		{"Coordinator", func(o *Options) { o.Coordinator = nil }, "Coordinator is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := full()
			tt.unset(&o)
			s, err := New(o)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
		})
	}
}

// TestCloseLeavesTheCoordinator: the coordinator is the caller's, and
// still serves (and publishes to the other replicas) after the server
// that used it closed.
func TestCloseLeavesTheCoordinator(t *testing.T) {
	ctx := testContext(t)
	bus := &chanBus{events: make(chan coordinator.Event, 16)}
	co := coordinator.New(coordinator.Options{Replica: uuid.New(), Bus: bus})
	defer co.Close()
	ts := newTestServer(t, Options{Coordinator: co}, nil)
	ts.srv.Close()

	agent := uuid.New()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- co.ServeAgent(sctx, agent, idleStream{}) }()
	defer func() {
		cancel()
		<-done
	}()
	for {
		select {
		case ev := <-bus.events:
			if ev.Kind == coordinator.EventAgentHello && ev.AgentID == agent {
				return
			}
		case <-ctx.Done():
			t.Fatal("the coordinator published nothing after the server closed")
		}
	}
}

// chanBus is a coordinator.Bus that hands events to a channel.
type chanBus struct{ events chan coordinator.Event }

func (b *chanBus) Publish(ctx context.Context, ev coordinator.Event) error {
	select {
	case b.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// idleStream is a peer that says nothing until the stream ends.
type idleStream struct{}

func (idleStream) Recv(ctx context.Context) (*tether.CoordinateRequest, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (idleStream) Send(context.Context, *tether.CoordinateResponse) error { return nil }
