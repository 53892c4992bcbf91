package server

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/coordinator"
	"github.com/tetherdev/tether/handoff"
	"github.com/tetherdev/tether/store"
)

// A proxy's tunnels, as the primary allows them. A proxy's token alone
// opens no tunnel: the proxy may be introduced to a workspace's agent only
// while it shows a grant for that workspace that still holds. A grant is a
// hand-off token the primary signed for this proxy (handoff.VerifyGrant:
// audience, signature, within the grant's life) under the proxy's current
// token (Claims.Generation), for this workspace, and its user may still
// open what it names: the session behind it lives, the user is active and
// may still reach the terminal or the app by the rules the hand-off
// applied. A public app's grant holds while the app is public.
//
// The proxy shows its grants for the workspace when it opens the
// coordination stream (tether.ProxyGrantHeader), and the primary asks
// again every proxyGrantRecheck: once none holds, the stream is revoked
// and the agent drops the proxy's peer. A proxy that took over the token
// of another cannot use that one's grants (audience), nor old grants after
// an admin regenerated its token (generation), nor a grant for one
// workspace to reach another.
//
// The tunnel to an agent is shared by the proxy's users of that
// workspace; it rests on the grants shown when it was opened. A user
// whose grant came later keeps using it while one of those holds; when
// none does, the tunnel goes and the proxy opens a new one, on the grants
// it holds then, at the next request.

// proxyGrantRecheck is how often the primary asks again whether a
// proxy's coordination stream still rests on a live grant.
const proxyGrantRecheck = ProxyHeartbeatInterval

var errNoProxyGrant = tether.Errorf(tether.EFORBIDDEN,
	"the workspace proxy holds no live grant for this workspace: a user who may reach it must open its terminal or app through the proxy")

// proxyTokenGeneration names a proxy's current token in the grants the
// primary signs for it. It derives from the token's hash, which only the
// store holds, and says nothing about the token.
func proxyTokenGeneration(p store.WorkspaceProxy) string {
	sum := sha256.Sum256([]byte("tether workspace proxy grant generation\x00" + p.TokenHash))
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// errGrantDead is why a grant no longer holds; its message goes to the
// log, never to the proxy.
type errGrantDead struct{ why string }

func (e *errGrantDead) Error() string { return e.why }

func grantDead(format string, args ...any) error {
	return &errGrantDead{why: fmt.Sprintf(format, args...)}
}

// checkProxyGrant returns nil if token is a grant of p's for the workspace
// agentID that still holds, an *errGrantDead if it does not, and another
// error if the store could not say.
func (s *Server) checkProxyGrant(ctx context.Context, p store.WorkspaceProxy, token string, agentID uuid.UUID) error {
	priv, err := s.handoffKey(ctx)
	if err != nil {
		return err
	}
	c, err := handoff.VerifyGrant(priv.Public().(ed25519.PublicKey), token, p.ID, s.now(), proxyGrantLifetime)
	if err != nil {
		return grantDead("%v", err)
	}
	if c.Workspace != agentID {
		return grantDead("grant for another workspace")
	}
	if c.Generation != proxyTokenGeneration(p) {
		return grantDead("grant from before the proxy's token was regenerated")
	}
	var caller *store.User
	if c.User != uuid.Nil || c.Session != "" {
		_, u, err := s.sessionUser(ctx, c.Session)
		if code := tether.ErrorCode(err); code == tether.EUNAUTHORIZED || code == tether.EFORBIDDEN {
			return grantDead("the session behind the grant ended: %s", tether.ErrorMessage(err))
		} else if err != nil {
			return err
		}
		if u.ID != c.User {
			return grantDead("grant names another user than its session's")
		}
		caller = &u
	}
	ws, err := s.store.WorkspaceByID(ctx, agentID)
	if errors.Is(err, store.ErrNotFound) {
		return grantDead("the workspace is gone")
	} else if err != nil {
		return err
	}
	switch c.Scope {
	case handoff.ScopeTerminal:
		if caller == nil || !canAccess(*caller, ws) {
			return grantDead("the user may no longer open the workspace's terminal")
		}
		return nil
	case handoff.ScopeApp:
		app, err := s.workspaceApp(ctx, ws, c.App.Name)
		if tether.ErrorCode(err) == tether.ENOTFOUND {
			return grantDead("the app is gone")
		} else if err != nil {
			return err
		}
		t := appTarget{ws: ws, app: app}
		if err := authorizeApp(caller, t); err != nil {
			return grantDead("the app's sharing no longer lets the grant's user open it")
		}
		if c.Host == "" {
			if err := s.pathAppOrigin(caller, t); err != nil {
				return grantDead("the path-based app no longer opens for the grant's user")
			}
		}
		return nil
	}
	return grantDead("grant of unknown scope %q", c.Scope)
}

// anyProxyGrant returns nil if one of tokens holds (checkProxyGrant),
// errNoProxyGrant if none does, and the store's error if it could not
// tell.
func (s *Server) anyProxyGrant(ctx context.Context, p store.WorkspaceProxy, tokens []string, agentID uuid.UUID) error {
	var failed error
	var why []string
	for _, t := range tokens {
		err := s.checkProxyGrant(ctx, p, t, agentID)
		if err == nil {
			return nil
		}
		var dead *errGrantDead
		if errors.As(err, &dead) {
			why = append(why, dead.why)
		} else if failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return failed
	}
	s.logger.Info("refused a workspace proxy's tunnel: no live grant", slog.String("proxy", p.Name),
		slog.String("workspace", agentID.String()), slog.Any("grants", why))
	return errNoProxyGrant
}

// proxyCoordinate introduces one of a proxy's tunnel peers to a
// workspace's agent, as clientCoordinate does for a CLI, while the proxy
// shows a live grant for the workspace.
func (s *Server) proxyCoordinate(w http.ResponseWriter, r *http.Request, p store.WorkspaceProxy) error {
	if !isWebSocketUpgrade(r) {
		return errNotWebSocket
	}
	q := r.URL.Query()
	if v := q.Get("version"); v != tether.CoordinateProtocolVersion {
		return tether.Errorf(tether.EINVALID, "coordination protocol version %q is not supported (the primary speaks %s): run the same version of tether on the proxy", v, tether.CoordinateProtocolVersion)
	}
	clientID, err := uuid.Parse(q.Get("id"))
	if err != nil || clientID == uuid.Nil {
		return tether.Errorf(tether.EINVALID, "query parameter id must be the tunnel's peer ID (a UUID)")
	}
	agentID, err := uuid.Parse(q.Get("agent"))
	if err != nil {
		return tether.Errorf(tether.EINVALID, "query parameter agent must be a workspace ID")
	}
	grants := r.Header.Values(tether.ProxyGrantHeader)
	if len(grants) > tether.MaxProxyGrantsShown {
		return tether.Errorf(tether.EINVALID, "at most %d grants on one request", tether.MaxProxyGrantsShown)
	}
	if err := s.anyProxyGrant(r.Context(), p, grants, agentID); err != nil {
		return err
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return nil // Accept has written the HTTP error.
	}
	s.wg.Add(1)
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stream := coordinator.NewWebSocket(conn, clientID, coordinator.WebSocketOptions{})
	pw := &proxyWS{stream: stream}
	s.proxies.mu.Lock()
	s.proxies.streams[p.ID] = append(s.proxies.streams[p.ID], pw)
	s.proxies.mu.Unlock()
	defer func() {
		s.proxies.mu.Lock()
		s.proxies.streams[p.ID] = slices.DeleteFunc(s.proxies.streams[p.ID], func(x *proxyWS) bool { return x == pw })
		if len(s.proxies.streams[p.ID]) == 0 {
			delete(s.proxies.streams, p.ID)
		}
		s.proxies.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.recheckProxyGrants(ctx, p, grants, agentID, stream)
	}()
	err = s.coord.ServeClient(ctx, clientID, agentID, stream)
	cancel()
	wg.Wait()
	stream.Close(err)
	s.logger.Debug("proxy coordination ended", slog.String("proxy", p.Name), slog.Any("err", err))
	return nil
}

// recheckProxyGrants revokes the stream once none of its grants holds.
// A store that cannot tell leaves it be until the next check.
func (s *Server) recheckProxyGrants(ctx context.Context, p store.WorkspaceProxy, grants []string, agentID uuid.UUID, stream *coordinator.WebSocket) {
	t := time.NewTicker(proxyGrantRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.anyProxyGrant(ctx, p, grants, agentID)
		if errors.Is(err, errNoProxyGrant) {
			stream.Revoke("no user of this workspace proxy may reach the workspace any more")
			return
		}
	}
}
