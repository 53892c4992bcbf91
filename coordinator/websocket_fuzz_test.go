package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
)

// fuzzPeer is the peer whose socket the fuzzed messages arrive on.
var fuzzPeer = uuid.MustParse("0b5c2e3a-7d41-4f0e-9a63-2f1d8c4b9e77")

// recvResult is what the server end's first Recv returned.
type recvResult struct {
	req *tether.CoordinateRequest
	err error
}

// FuzzWebSocketRecv sends one message over a real WebSocket to the
// coordinator's reader, and checks its node as the coordinator's receive
// loop does. Its verdict must match the protocol's rules,
// computed here independently: a text message of at most
// MaxCoordinateMessage bytes that decodes as a CoordinateRequest whose node
// (if any) is valid for the peer is delivered as decoded; anything else
// closes the socket with the documented status and a reason that fits in a
// close frame, and the peer sees exactly that status and reason.
func FuzzWebSocketRecv(f *testing.F) {
	node := newNode(fuzzPeer, 1)
	for _, req := range []tether.CoordinateRequest{{Node: node}, {Disconnect: true}, {}} {
		b, err := json.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(false, uint16(0), b)
	}
	other, _ := json.Marshal(tether.CoordinateRequest{Node: newNode(uuid.New(), 1)})
	f.Add(false, uint16(0), other)
	f.Add(true, uint16(0), []byte(`{}`))
	f.Add(false, uint16(0), []byte(`{"node": {"key": `))
	f.Add(false, uint16(0), []byte(`{"disconnect": "yes"}`))
	f.Add(false, uint16(0), []byte("{\"node\": {\"key\": \"nodekey:zz\xff\xfe\"}}"))
	// Padded to the limit and one byte past it.
	f.Add(false, uint16(tether.MaxCoordinateMessage-2), []byte(`{}`))
	f.Add(false, uint16(tether.MaxCoordinateMessage-1), []byte(`{}`))

	results := make(chan recvResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws := coordinator.NewWebSocket(conn, fuzzPeer, coordinator.WebSocketOptions{HeartbeatInterval: -1})
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		req, err := ws.Recv(ctx)
		if err == nil && req.Node != nil {
			// The coordinator's receive loop checks nodes, whatever
			// the stream, and ends it with ErrInvalidNode.
			if verr := req.Node.Validate(fuzzPeer); verr != nil {
				err = fmt.Errorf("%w: %v", coordinator.ErrInvalidNode, verr)
			}
		}
		results <- recvResult{req, err}
		ws.Close(err)
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")

	f.Fuzz(func(t *testing.T, binary bool, pad uint16, body []byte) {
		msg := append(bytes.Repeat([]byte(" "), int(pad)), body...)
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer conn.CloseNow()
		// The server may close before it has read all of an oversized
		// message; the write's error is then expected.
		conn.Write(ctx, typ, msg)
		_, _, rerr := conn.Read(ctx)
		var got recvResult
		select {
		case got = <-results:
		case <-ctx.Done():
			t.Fatal("the server's Recv did not return")
		}
		status, reason := websocket.CloseStatus(rerr), closeReason(rerr)

		wantStatus, wantReason := expectedVerdict(binary, msg)
		if wantStatus == websocket.StatusNormalClosure {
			if got.err != nil {
				t.Fatalf("valid request refused: %v", got.err)
			}
			var want tether.CoordinateRequest
			json.Unmarshal(msg, &want)
			a, _ := json.Marshal(got.req)
			b, _ := json.Marshal(want)
			if !bytes.Equal(a, b) {
				t.Fatalf("delivered %s, want %s", a, b)
			}
			if status != websocket.StatusNormalClosure {
				t.Fatalf("peer saw close status %v after a valid request (%v)", status, rerr)
			}
			return
		}
		if errors.Is(got.err, coordinator.ErrInvalidNode) {
			if wantReason != invalidNodeReason {
				t.Fatalf("refused as an invalid node, want %v %q: %v", wantStatus, wantReason, got.err)
			}
			if status != websocket.StatusPolicyViolation || !strings.HasPrefix(reason, invalidNodeReason) || len(reason) > 123 {
				t.Fatalf("invalid node: peer saw %v %q", status, reason)
			}
			return
		}
		var pe *coordinator.ProtocolError
		if !errors.As(got.err, &pe) {
			t.Fatalf("invalid message (want %v %q) returned %v, not a protocol error", wantStatus, wantReason, got.err)
		}
		if pe.Status != wantStatus || !strings.HasPrefix(pe.Reason, wantReason) {
			t.Fatalf("closed with %v %q, want %v %q...", pe.Status, pe.Reason, wantStatus, wantReason)
		}
		if len(pe.Reason) > 123 || !utf8.ValidString(pe.Reason) {
			t.Fatalf("close reason %q does not fit a close frame", pe.Reason)
		}
		if status != pe.Status || reason != pe.Reason {
			t.Fatalf("peer saw %v %q, server closed with %v %q", status, reason, pe.Status, pe.Reason)
		}
	})
}

// expectedVerdict applies the protocol's rules to a message: the close
// status and the start of the reason, StatusNormalClosure when it is a
// valid request.
func expectedVerdict(binary bool, msg []byte) (websocket.StatusCode, string) {
	if binary {
		return websocket.StatusUnsupportedData, "coordination messages must be JSON text"
	}
	if len(msg) > tether.MaxCoordinateMessage {
		return websocket.StatusMessageTooBig, "message is larger than"
	}
	var req tether.CoordinateRequest
	if err := json.Unmarshal(msg, &req); err != nil {
		return websocket.StatusUnsupportedData, "malformed coordinate request"
	}
	if req.Node != nil && req.Node.Validate(fuzzPeer) != nil {
		return websocket.StatusPolicyViolation, invalidNodeReason
	}
	return websocket.StatusNormalClosure, ""
}

// invalidNodeReason starts the close reason of a stream that sent an
// invalid node.
const invalidNodeReason = "invalid node: "

func closeReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
