package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/store"
)

// Live connections are the long-lived WebSockets that users hold open
// through this server: web terminals and the CLI's coordination sockets
// (which keep its tunnels to agents alive). Authentication happens once,
// when one opens, so taking a user's access away (suspending or deleting
// them, demoting an admin, ending their sessions) must also end the ones
// already open, with a reason the user sees:
//
//   - a change made through this server rechecks that user's connections
//     at once (recheckLive);
//   - every liveRecheckInterval, all connections are rechecked, which
//     carries changes made through another replica, or by a session
//     expiring, within that time.
//
// The check reads the store (user, session, role), so it decides alone and
// the same way everywhere: a connection lives while its user is active,
// its session is valid and its user may reach its workspace.
//
// A sweep costs two indexed reads per distinct session with connections
// open (the users' reads are shared), every liveRecheckInterval.

// liveRecheckInterval bounds how long a connection outlives its access
// when the change was made through another replica.
const liveRecheckInterval = 5 * time.Second

// liveConn is one open connection, and how to end it.
type liveConn struct {
	userID  uuid.UUID
	session string // token hash of the session it was opened with
	ws      store.Workspace
	what    string // "web terminal", "tunnel": for the log
	end     func(reason string)
	once    sync.Once
}

// liveConns are the open connections.
type liveConns struct {
	mu    sync.Mutex
	conns map[*liveConn]struct{} // guarded by mu
	// changing counts the changeAccess calls in progress per user; the
	// sweep leaves their connections to them. Guarded by mu.
	changing map[uuid.UUID]int
}

func (l *liveConns) add(c *liveConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = map[*liveConn]struct{}{}
	}
	l.conns[c] = struct{}{}
}

func (l *liveConns) remove(c *liveConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// list returns the connections of user (all of them for uuid.Nil, except
// those of users whose access is changing).
func (l *liveConns) list(user uuid.UUID) []*liveConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*liveConn
	for c := range l.conns {
		if c.userID == user || user == uuid.Nil && l.changing[c.userID] == 0 {
			out = append(out, c)
		}
	}
	return out
}

// change marks user's access as changing until done is called.
func (l *liveConns) change(user uuid.UUID) (done func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changing == nil {
		l.changing = map[uuid.UUID]int{}
	}
	l.changing[user]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.changing[user]--; l.changing[user] == 0 {
			delete(l.changing, user)
		}
	}
}

// trackLive registers a connection that u opened to workspace ws with the
// request r; end closes it, telling the user why. The caller must call the
// returned function when the connection ends.
//
// It checks the connection once right away: a revocation that committed
// between the request's authentication and now has already swept the
// connections it could see, and this one was not among them.
func (s *Server) trackLive(r *http.Request, u store.User, ws store.Workspace, what string, end func(reason string)) (untrack func()) {
	c := &liveConn{
		userID:  u.ID,
		session: s.requestSessionHash(r),
		ws:      ws,
		what:    what,
		end:     end,
	}
	s.live.add(c)
	s.recheckConns(s.ctx, []*liveConn{c}, "")
	return func() { s.live.remove(c) }
}

// changeAccess makes a change to user that may take their access away,
// and then ends their connections that lost it. sessionGone is the reason
// given when a connection's session no longer exists ("" for the default).
// Meanwhile the periodic sweep leaves the user's connections alone, so
// that they end with this change's reason rather than a generic one.
func (s *Server) changeAccess(ctx context.Context, user uuid.UUID, sessionGone string, change func() error) error {
	defer s.live.change(user)()
	if err := change(); err != nil {
		return err
	}
	s.recheckConns(ctx, s.live.list(user), sessionGone)
	return nil
}

// sweepLive rechecks every open connection now and then.
func (s *Server) sweepLive() {
	defer s.wg.Done()
	t := time.NewTicker(liveRecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.recheckConns(s.ctx, s.live.list(uuid.Nil), "")
		}
	}
}

// recheckConns ends the connections that lost their access. When the store
// cannot answer, connections stay: an outage of the database must not cut
// every terminal; the next sweep decides.
func (s *Server) recheckConns(ctx context.Context, conns []*liveConn, sessionGone string) {
	type userResult struct {
		u   store.User
		err error
	}
	users := map[uuid.UUID]userResult{}
	sessions := map[string]error{}
	for _, c := range conns {
		ur, ok := users[c.userID]
		if !ok {
			ur.u, ur.err = s.store.UserByID(ctx, c.userID)
			users[c.userID] = ur
		}
		serr, ok := sessions[c.session]
		if !ok {
			var sess store.Session
			var tok *store.APIToken
			sess, tok, serr = s.findSession(ctx, c.session)
			if serr == nil && s.now().After(sess.ExpiresAt) {
				serr = errSessionExpired
				if tok != nil {
					serr = errTokenExpired
				}
			}
			sessions[c.session] = serr
		}
		reason, err := liveAccess(c, ur.u, ur.err, serr, sessionGone)
		if err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("recheck open connections", slog.Any("err", err))
			}
			continue
		}
		if reason != "" {
			s.endLive(c, reason)
		}
	}
}

var (
	errSessionExpired = errors.New("session expired")
	errTokenExpired   = errors.New("API token expired")
)

// liveAccess decides whether c keeps its access, given what the store said
// about its user and session: "" if it does, else the reason it ends. An
// error means the store could not tell.
func liveAccess(c *liveConn, u store.User, userErr, sessionErr error, sessionGone string) (string, error) {
	switch {
	case errors.Is(userErr, store.ErrNotFound):
		return "your account was deleted", nil
	case userErr != nil:
		return "", userErr
	case u.Status == tether.UserSuspended:
		return "your account was suspended", nil
	case errors.Is(sessionErr, store.ErrNotFound):
		if sessionGone != "" {
			return sessionGone, nil
		}
		return "your session was signed out: sign in again", nil
	case errors.Is(sessionErr, errSessionExpired):
		return "your session expired: sign in again", nil
	case errors.Is(sessionErr, errTokenExpired):
		return "the API token it was opened with expired", nil
	case sessionErr != nil:
		return "", sessionErr
	case !canAccess(u, c.ws):
		return "you may no longer reach workspace " + c.ws.Owner + "/" + c.ws.Name + ": your role changed", nil
	}
	return "", nil
}

// endLive ends c once, in the background: ending waits for the peer to
// answer the close.
func (s *Server) endLive(c *liveConn, reason string) {
	c.once.Do(func() {
		s.logger.Info("closing a connection whose access was revoked", slog.String("what", c.what),
			slog.String("user", c.userID.String()), slog.String("workspace", c.ws.Owner+"/"+c.ws.Name),
			slog.String("reason", reason))
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.end(reason)
		}()
	})
}
