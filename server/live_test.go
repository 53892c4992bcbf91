package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// openTunnel opens a CLI's coordination WebSocket to a workspace, as
// `tether ssh` does, and reads it in the background.
func (ts *testServer) openTunnel(token, owner, ws string) *tunnelSocket {
	ts.t.Helper()
	ctx := testContext(ts.t)
	q := url.Values{"id": {uuid.NewString()}, "version": {tether.CoordinateProtocolVersion}}
	u := "ws" + strings.TrimPrefix(ts.http.URL, "http") + "/api/v2/workspaces/" + owner + "/" + ws + "/coordinate?" + q.Encode()
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{tether.SessionTokenHeader: {token}}})
	if err != nil {
		ts.t.Fatalf("open tunnel to %s/%s: %v (%v)", owner, ws, err, resp)
	}
	// The coordinator's first message (the DERP map) says the server has
	// registered the connection, so that the test's next change finds it.
	if _, _, err := conn.Read(ctx); err != nil {
		ts.t.Fatalf("tunnel to %s/%s: first message: %v", owner, ws, err)
	}
	s := &tunnelSocket{t: ts.t, conn: conn, closed: make(chan struct{})}
	go s.read()
	ts.t.Cleanup(func() {
		conn.CloseNow()
		<-s.closed
	})
	return s
}

type tunnelSocket struct {
	t      *testing.T
	conn   *websocket.Conn
	closed chan struct{}
	err    error // why reading ended; set before closed is closed
}

func (s *tunnelSocket) read() {
	defer close(s.closed)
	for {
		if _, _, err := s.conn.Read(context.Background()); err != nil {
			s.err = err
			return
		}
	}
}

// awaitClose waits for the server to close the socket, and checks its
// status and reason.
func (s *tunnelSocket) awaitClose(reason string) {
	s.t.Helper()
	select {
	case <-s.closed:
	case <-time.After(testTimeout):
		s.t.Fatalf("the socket is still open; want it closed with %q", reason)
	}
	var ce websocket.CloseError
	if !errors.As(s.err, &ce) || ce.Code != tether.CloseAccessRevoked || !strings.Contains(ce.Reason, reason) {
		s.t.Errorf("socket ended with %v; want status %d and a reason with %q", s.err, tether.CloseAccessRevoked, reason)
	}
}

// alive checks that the socket still answers a ping.
func (s *tunnelSocket) alive() {
	s.t.Helper()
	if err := s.conn.Ping(testContext(s.t)); err != nil {
		s.t.Errorf("the socket was closed: %v (%v)", err, s.err)
	}
}

// Open tunnels end, with a reason, the moment their user loses access;
// those that keep it stay up.
func TestLiveConnectionsEnd(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	carol := ts.addUser(alice, "carol", tether.RoleAdmin)
	ts.must(201, bob, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "dev"}, nil)
	ts.must(201, carol, "POST", "/api/v2/workspaces", tether.CreateWorkspaceRequest{Name: "mine"}, nil)

	t.Run("suspended", func(t *testing.T) {
		s := ts.openTunnel(bob, "me", "dev")
		keep := ts.openTunnel(alice, "bob", "dev")
		ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserSuspended}, nil)
		s.awaitClose("your account was suspended")
		keep.alive()
		ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserActive}, nil)
		bob = ts.login("bob", "bob-secret-pw")
	})
	t.Run("demoted", func(t *testing.T) {
		others := ts.openTunnel(carol, "bob", "dev")
		own := ts.openTunnel(carol, "me", "mine")
		ts.must(200, alice, "PUT", "/api/v2/users/carol/role", tether.UpdateUserRoleRequest{Role: tether.RoleMember}, nil)
		others.awaitClose("may no longer reach workspace bob/dev")
		own.alive()
	})
	t.Run("signed out everywhere", func(t *testing.T) {
		laptop := ts.login("bob", "bob-secret-pw")
		a, b := ts.openTunnel(bob, "me", "dev"), ts.openTunnel(laptop, "me", "dev")
		ts.must(200, bob, "DELETE", "/api/v2/users/me/sessions", nil, nil)
		a.awaitClose("you signed out everywhere")
		b.awaitClose("you signed out everywhere")
		bob = ts.login("bob", "bob-secret-pw")
	})
	t.Run("own password changed", func(t *testing.T) {
		laptop := ts.login("bob", "bob-secret-pw")
		here, there := ts.openTunnel(bob, "me", "dev"), ts.openTunnel(laptop, "me", "dev")
		ts.must(204, bob, "PUT", "/api/v2/users/me/password", tether.UpdateUserPasswordRequest{OldPassword: "bob-secret-pw", Password: "bob-new-secret"}, nil)
		there.awaitClose("your password was changed")
		here.alive()
	})
	t.Run("changed through another replica", func(t *testing.T) {
		// No request to this server: only its periodic recheck sees it.
		s := ts.openTunnel(bob, "me", "dev")
		var me tether.User
		ts.must(200, bob, "GET", "/api/v2/users/me", nil, &me)
		if err := ts.store.SetUserStatus(testContext(t), me.ID, tether.UserSuspended); err != nil {
			t.Fatal(err)
		}
		s.awaitClose("your account was suspended")
		ts.must(200, alice, "PUT", "/api/v2/users/bob/status", tether.UpdateUserStatusRequest{Status: tether.UserActive}, nil)
		bob = ts.login("bob", "bob-new-secret")
	})
	t.Run("deleted", func(t *testing.T) {
		s := ts.openTunnel(bob, "me", "dev")
		ts.must(200, alice, "DELETE", "/api/v2/users/bob?delete_workspaces=true", nil, nil)
		s.awaitClose("your account was deleted")
	})
	if logs := ts.logs.String(); !strings.Contains(logs, "closing a connection whose access was revoked") {
		t.Errorf("no log line about the closed connections:\n%s", logs)
	}
}

// A connection that opens just after its access was revoked (authenticated
// before, registered after the revocation swept) is ended at once.
func TestTrackLiveChecksAtOnce(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	var me tether.User
	ts.must(200, alice, "GET", "/api/v2/users/me", nil, &me)
	u, err := ts.store.UserByID(testContext(t), me.ID)
	if err != nil {
		t.Fatal(err)
	}
	stale := ts.login("alice", "alice-secret-pw")
	if _, err := ts.store.DeleteUserSessions(testContext(t), me.ID, store.HashToken(alice)); err != nil {
		t.Fatal(err)
	}
	ended := make(chan string, 2)
	for _, tok := range []string{alice, stale} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set(tether.SessionTokenHeader, tok)
		untrack := ts.srv.trackLive(r, u, store.Workspace{OwnerID: u.ID}, "test", func(reason string) { ended <- reason })
		defer untrack()
	}
	select {
	case reason := <-ended:
		if !strings.Contains(reason, "signed out") {
			t.Errorf("ended because %q", reason)
		}
	case <-time.After(testTimeout):
		t.Fatal("the connection of a signed-out session was not ended")
	}
	if n := len(ts.srv.live.list(me.ID)); n != 2 {
		t.Errorf("%d connections registered, want 2 until they untrack", n)
	}
	select {
	case reason := <-ended:
		t.Errorf("the valid session's connection ended too: %q", reason)
	default:
	}
}
