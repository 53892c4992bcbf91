package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

// wsServer serves a coordinator over real WebSockets the way the HTTP
// server does: ?agent=ID for an agent, ?client=ID&agent=ID for a client.
type wsServer struct {
	c    *coordinator.Coordinator
	srv  *httptest.Server
	errs chan error // what each Serve call returned
	// clients gets each client's stream as it connects.
	clients chan *coordinator.WebSocket
	opts    coordinator.WebSocketOptions
	cancel  context.CancelFunc
}

func newWSServer(t *testing.T, opts coordinator.WebSocketOptions, copts coordinator.Options) *wsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &wsServer{c: coordinator.New(copts), errs: make(chan error, 100), clients: make(chan *coordinator.WebSocket, 100), opts: opts, cancel: cancel}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agentID, err := uuid.Parse(r.URL.Query().Get("agent"))
		if err != nil {
			http.Error(w, "bad agent", http.StatusBadRequest)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if c := r.URL.Query().Get("client"); c != "" {
			clientID := uuid.MustParse(c)
			ws := coordinator.NewWebSocket(conn, clientID, s.opts)
			s.clients <- ws
			err = s.c.ServeClient(ctx, clientID, agentID, ws)
			ws.Close(err)
		} else {
			ws := coordinator.NewWebSocket(conn, agentID, s.opts)
			err = s.c.ServeAgent(ctx, agentID, ws)
			ws.Close(err)
		}
		s.errs <- err
	}))
	s.srv.Start()
	t.Cleanup(func() {
		cancel()
		s.srv.Close()
	})
	return s
}

// wsPeer is the far end of a coordination WebSocket, speaking raw JSON.
type wsPeer struct {
	t    *testing.T
	id   uuid.UUID
	conn *websocket.Conn
}

func (s *wsServer) dial(t *testing.T, ctx context.Context, query string, id uuid.UUID) *wsPeer {
	t.Helper()
	url := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/?" + query
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetReadLimit(tether.MaxCoordinateMessage)
	t.Cleanup(func() { conn.CloseNow() })
	return &wsPeer{t: t, id: id, conn: conn}
}

func (s *wsServer) dialAgent(t *testing.T, ctx context.Context, id uuid.UUID) *wsPeer {
	return s.dial(t, ctx, "agent="+id.String(), id)
}

func (s *wsServer) dialClient(t *testing.T, ctx context.Context, id, agentID uuid.UUID) *wsPeer {
	return s.dial(t, ctx, "agent="+agentID.String()+"&client="+id.String(), id)
}

func (p *wsPeer) write(ctx context.Context, v any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.conn.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *wsPeer) read(ctx context.Context) (*tether.CoordinateResponse, error) {
	typ, b, err := p.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		p.t.Errorf("server sent a %v message", typ)
	}
	var r tether.CoordinateResponse
	if err := json.Unmarshal(b, &r); err != nil {
		p.t.Fatalf("decode response: %v", err)
	}
	return &r, nil
}

// awaitUpdate reads until an update matches.
func (p *wsPeer) awaitUpdate(ctx context.Context, match func(tether.PeerUpdate) bool) tether.PeerUpdate {
	p.t.Helper()
	for {
		r, err := p.read(ctx)
		if err != nil {
			p.t.Fatalf("peer %s: read: %v", p.id, err)
		}
		for _, u := range r.Peers {
			if match(u) {
				return u
			}
		}
	}
}

// awaitClose reads until the server closes the socket, and returns the
// close status and reason.
func (p *wsPeer) awaitClose(ctx context.Context) (websocket.StatusCode, string) {
	p.t.Helper()
	for {
		_, err := p.read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			p.t.Fatalf("socket ended with %v, want a close frame", err)
		}
		return ce.Code, ce.Reason
	}
}

func TestWebSocketForwarding(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
	agentID, clientID := uuid.New(), uuid.New()
	a := s.dialAgent(t, ctx, agentID)
	cl := s.dialClient(t, ctx, clientID, agentID)

	a.write(ctx, tether.CoordinateRequest{Node: newNode(agentID, 5)})
	u := cl.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.Kind == tether.PeerNode })
	if u.ID != agentID || u.Node.PreferredDERP != 5 {
		t.Fatalf("client got %+v, want the agent's node", u)
	}
	cl.write(ctx, tether.CoordinateRequest{Node: newNode(clientID, 6)})
	u = a.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.Kind == tether.PeerNode })
	if u.ID != clientID || u.Node.PreferredDERP != 6 {
		t.Fatalf("agent got %+v, want the client's node", u)
	}

	// A graceful leave over the socket.
	a.write(ctx, tether.CoordinateRequest{Disconnect: true})
	cl.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.ID == agentID && u.Kind == tether.PeerDisconnected })
	if code, _ := a.awaitClose(ctx); code != websocket.StatusNormalClosure {
		t.Errorf("agent's socket closed with %v, want normal closure", code)
	}
	if err := <-s.errs; err != nil {
		t.Errorf("ServeAgent after Disconnect = %v", err)
	}
	// A broken socket is a loss.
	cl.conn.CloseNow()
	if err := <-s.errs; err == nil {
		t.Error("ServeClient after a broken socket = nil, want an error")
	}
}

// A client whose access the server revokes is told why, and its agent
// hears that it left (and so drops its tunnel at once), not that it was
// lost.
func TestWebSocketRevoke(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
	agentID, clientID := uuid.New(), uuid.New()
	a := s.dialAgent(t, ctx, agentID)
	cl := s.dialClient(t, ctx, clientID, agentID)
	stream := <-s.clients
	cl.write(ctx, tether.CoordinateRequest{Node: newNode(clientID, 6)})
	a.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.ID == clientID && u.Kind == tether.PeerNode })

	const reason = "your account was suspended"
	done := make(chan struct{})
	go func() { defer close(done); stream.Revoke(reason) }()
	code, got := cl.awaitClose(ctx)
	if code != tether.CloseAccessRevoked || got != reason {
		t.Errorf("client's socket closed with %v %q, want %d %q", code, got, tether.CloseAccessRevoked, reason)
	}
	u := a.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.ID == clientID && u.Kind != tether.PeerNode })
	if u.Kind != tether.PeerDisconnected {
		t.Errorf("agent heard %q about the revoked client, want %q", u.Kind, tether.PeerDisconnected)
	}
	var revoked *coordinator.RevokedError
	if err := <-s.errs; !errors.As(err, &revoked) || revoked.Reason != reason {
		t.Errorf("ServeClient = %v, want a RevokedError with the reason", err)
	}
	<-done
}

// TestWebSocketViolations sends what a peer must not, and checks the close
// status and reason it gets back.
func TestWebSocketViolations(t *testing.T) {
	agentID := uuid.New()
	tests := []struct {
		name       string
		typ        websocket.MessageType
		msg        func() []byte
		wantStatus websocket.StatusCode
		wantReason string
		// invalidNode: the coordinator refuses the node (ErrInvalidNode),
		// and Close sends its status; otherwise the stream itself closed
		// the socket (a *ProtocolError).
		invalidNode bool
	}{
		{
			name:       "malformed JSON",
			msg:        func() []byte { return []byte(`{"node": {"key": `) },
			wantStatus: websocket.StatusUnsupportedData,
			wantReason: "malformed coordinate request",
		},
		{
			name:       "wrong type",
			msg:        func() []byte { return []byte(`{"disconnect": "yes"}`) },
			wantStatus: websocket.StatusUnsupportedData,
			wantReason: "malformed coordinate request",
		},
		{
			name:       "bad key",
			msg:        func() []byte { return []byte(`{"node": {"key": "nodekey:zz"}}`) },
			wantStatus: websocket.StatusUnsupportedData,
			wantReason: "malformed coordinate request",
		},
		{
			name:       "binary",
			typ:        websocket.MessageBinary,
			msg:        func() []byte { return []byte(`{}`) },
			wantStatus: websocket.StatusUnsupportedData,
			wantReason: "not binary",
		},
		{
			name: "oversized",
			msg: func() []byte {
				return []byte(`{"x":"` + strings.Repeat("a", tether.MaxCoordinateMessage) + `"}`)
			},
			wantStatus: websocket.StatusMessageTooBig,
			wantReason: "larger than 65536 bytes",
		},
		{
			name: "another peer's address",
			msg: func() []byte {
				b, _ := json.Marshal(tether.CoordinateRequest{Node: newNode(uuid.New(), 1)})
				return b
			},
			wantStatus:  websocket.StatusPolicyViolation,
			wantReason:  "invalid node: address",
			invalidNode: true,
		},
		{
			name: "node with oversized DERP latency keys",
			msg: func() []byte {
				n := newNode(agentID, 1)
				n.DERPLatency = hugeLatencies()
				// Sent with '<' unescaped, as a peer may.
				var buf bytes.Buffer
				enc := json.NewEncoder(&buf)
				enc.SetEscapeHTML(false)
				enc.Encode(tether.CoordinateRequest{Node: n})
				b := buf.Bytes()
				if len(b) > tether.MaxCoordinateMessage {
					panic("test node does not fit in a request")
				}
				return b
			},
			wantStatus:  websocket.StatusPolicyViolation,
			wantReason:  "invalid node: DERP latency key",
			invalidNode: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
			a := s.dialAgent(t, ctx, agentID)
			cl := s.dialClient(t, ctx, uuid.New(), agentID)
			a.write(ctx, tether.CoordinateRequest{Node: newNode(agentID, 1)})
			cl.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.Kind == tether.PeerNode })

			typ := tt.typ
			if typ == 0 {
				typ = websocket.MessageText
			}
			if err := a.conn.Write(ctx, typ, tt.msg()); err != nil {
				t.Fatalf("write: %v", err)
			}
			code, reason := a.awaitClose(ctx)
			if code != tt.wantStatus || !strings.Contains(reason, tt.wantReason) {
				t.Errorf("closed with %v %q, want %v containing %q", code, reason, tt.wantStatus, tt.wantReason)
			}
			if len(reason) > 123 {
				t.Errorf("reason is %d bytes, more than a close frame holds", len(reason))
			}
			var pe *coordinator.ProtocolError
			switch err := <-s.errs; {
			case tt.invalidNode && !errors.Is(err, coordinator.ErrInvalidNode):
				t.Errorf("ServeAgent = %v, want ErrInvalidNode", err)
			case !tt.invalidNode && (!errors.As(err, &pe) || pe.Status != tt.wantStatus):
				t.Errorf("ServeAgent = %v, want a ProtocolError with %v", err, tt.wantStatus)
			}
			cl.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.ID == agentID && u.Kind == tether.PeerLost })
		})
	}
}

// TestWebSocketAcceptsLimits checks that what is within the limits passes:
// a message of exactly MaxCoordinateMessage bytes, unknown fields, and a
// node with every list at its maximum.
func TestWebSocketAcceptsLimits(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
	agentID := uuid.New()
	a := s.dialAgent(t, ctx, agentID)
	cl := s.dialClient(t, ctx, uuid.New(), agentID)

	n := fullNode(agentID, 9)
	b, err := json.Marshal(map[string]any{"node": n, "future_field": true})
	if err != nil {
		t.Fatal(err)
	}
	// Pad with whitespace to exactly the limit.
	b = append(b, []byte(strings.Repeat(" ", tether.MaxCoordinateMessage-len(b)))...)
	if err := a.conn.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	u := cl.awaitUpdate(ctx, func(u tether.PeerUpdate) bool { return u.Kind == tether.PeerNode })
	if u.Node.PreferredDERP != 9 || len(u.Node.Endpoints) != tether.MaxNodeEndpoints {
		t.Errorf("client got %+v, want the full node", u.Node)
	}
}

// TestWebSocketSplitsResponses checks that a backlog too large for one
// message arrives as several, each within the limit.
func TestWebSocketSplitsResponses(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
	agentID := uuid.New()
	var clients []*wsPeer
	const n = 16 // one batch of full nodes is several times the limit
	for range n {
		id := uuid.New()
		cl := s.dialClient(t, ctx, id, agentID)
		cl.write(ctx, tether.CoordinateRequest{Node: fullNode(id, 1)})
		clients = append(clients, cl)
	}
	waitUntil(t, ctx, "all client nodes known", func() bool {
		sn := s.c.Snapshot()
		if len(sn.Agents) != 1 || len(sn.Agents[0].Clients) != n {
			return false
		}
		for _, c := range sn.Agents[0].Clients {
			if c.Node == nil {
				return false
			}
		}
		return true
	})
	a := s.dialAgent(t, ctx, agentID)
	got, messages := 0, 0
	for got < n {
		r, err := a.read(ctx) // the read limit is MaxCoordinateMessage
		if err != nil {
			t.Fatalf("read after %d nodes in %d messages: %v", got, messages, err)
		}
		got += len(r.Peers)
		messages++
	}
	if messages < 2 {
		t.Errorf("%d full nodes came in %d message, want them split", n, messages)
	}
}

// TestWebSocketHeartbeat checks that a peer that stops answering pings is
// dropped, and that one that answers is kept.
func TestWebSocketHeartbeat(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{HeartbeatInterval: 20 * time.Millisecond}, coordinator.Options{})
	agentID := uuid.New()

	// A client that reads, and so answers pings, counting them. It
	// connects first: an agent that never answers is dropped within a few
	// heartbeats, which on a loaded machine can be before a client that
	// dialled after it is connected, and that client would hear nothing.
	pings := make(chan struct{}, 100)
	url := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/?agent=" + agentID.String() + "&client=" + uuid.NewString()
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pings <- struct{}{}:
			default:
			}
			return true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	updates := make(chan tether.PeerUpdate, 10)
	go func() {
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				close(updates)
				return
			}
			var r tether.CoordinateResponse
			json.Unmarshal(b, &r)
			for _, u := range r.Peers {
				updates <- u
			}
		}
	}()

	waitUntil(t, ctx, "the client is connected", func() bool { return s.c.Snapshot().Clients == 1 })
	a := s.dialAgent(t, ctx, agentID)
	a.write(ctx, tether.CoordinateRequest{Node: newNode(agentID, 1)})

	// The agent never reads, so never answers: it is dropped, and the
	// client hears it was lost.
	err = <-s.errs
	if err == nil || !strings.Contains(err.Error(), "ping") {
		t.Fatalf("ServeAgent = %v, want a heartbeat failure", err)
	}
	for u := range updates {
		if u.ID == agentID && u.Kind == tether.PeerLost {
			break
		}
	}
	// The client answers several more pings and stays.
	for range 5 {
		select {
		case <-pings:
		case <-ctx.Done():
			t.Fatal("client got no pings")
		}
	}
	if n := s.c.Snapshot().Clients; n != 1 {
		t.Errorf("%d clients after pings were answered, want 1", n)
	}
	conn.CloseNow()
	for range updates {
	}
}

// TestWebSocketReplaced checks that an agent's second socket closes the
// first.
func TestWebSocketReplaced(t *testing.T) {
	ctx := testContext(t)
	s := newWSServer(t, coordinator.WebSocketOptions{}, coordinator.Options{})
	agentID := uuid.New()
	old := s.dialAgent(t, ctx, agentID)
	old.write(ctx, tether.CoordinateRequest{Node: newNode(agentID, 1)})
	waitUntil(t, ctx, "agent connected", func() bool { return s.c.AgentConnected(agentID) })
	s.dialAgent(t, ctx, agentID)
	if err := <-s.errs; !errors.Is(err, coordinator.ErrReplaced) {
		t.Fatalf("first ServeAgent = %v, want ErrReplaced", err)
	}
	if _, err := old.read(ctx); err == nil {
		t.Error("the replaced socket is still open")
	}
}

// fullNode is a valid node with every list at its maximum.
func fullNode(id uuid.UUID, marker int) *tether.Node {
	n := newNode(id, marker)
	n.Endpoints = n.Endpoints[:0]
	for i := range tether.MaxNodeEndpoints {
		n.Endpoints = append(n.Endpoints, netipAddrPort(i))
	}
	n.DERPLatency = make(map[string]float64)
	for i := range tether.MaxNodeDERPRegions {
		n.DERPLatency[strings.Repeat("9", 6)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = 0.123456789
	}
	return n
}

// TestWebSocketRelaysByVersion checks that only peers of protocol 1.1 hear
// of UDP relays: a 1.0 peer would take one for an ordinary peer.
func TestWebSocketRelaysByVersion(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    bool
	}{
		{"", false},
		{"1.0", false},
		{tether.CoordinateProtocolVersion, true},
	} {
		t.Run("version "+tc.version, func(t *testing.T) {
			ctx := testContext(t)
			s := newWSServer(t, coordinator.WebSocketOptions{Version: tc.version}, coordinator.Options{})
			relayID, agentID, clientID := uuid.New(), uuid.New(), uuid.New()
			r := startRelay(t, ctx, s.c, relayID)
			rn := newNode(relayID, 9)
			r.sendNode(ctx, rn)
			waitUntil(t, ctx, "the relay's node is known", func() bool { return s.c.KnowsNodeKey(rn.Key) })
			a := s.dialAgent(t, ctx, agentID)
			cl := s.dialClient(t, ctx, clientID, agentID)
			cl.write(ctx, tether.CoordinateRequest{Node: newNode(clientID, 6)})
			// The client's node comes after any news of the relay, which
			// was known before the agent connected.
			var sawRelay bool
			a.awaitUpdate(ctx, func(u tether.PeerUpdate) bool {
				if u.ID == relayID {
					sawRelay = u.Relay && u.Kind == tether.PeerNode
				}
				return u.ID == clientID && u.Kind == tether.PeerNode
			})
			if sawRelay != tc.want {
				t.Errorf("agent speaking %q heard of the relay: %v, want %v", tc.version, sawRelay, tc.want)
			}
		})
	}
}
