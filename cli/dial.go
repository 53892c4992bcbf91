package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/config"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

// tunnelFlags are the flags of every command that opens a tunnel.
type tunnelFlags struct {
	disableDirect bool
	forceRelay    bool
	logLevel      string
}

func (f *tunnelFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.disableDirect, "disable-direct", false, "relay all traffic through DERP, never direct nor through the UDP relay (for diagnosis)")
	cmd.Flags().BoolVar(&f.forceRelay, "force-relay", false, "never direct: relay all traffic through the server's UDP relay, or DERP where UDP cannot reach it (for diagnosis)")
	cmd.Flags().StringVar(&f.logLevel, "log-level", "error", "tunnel log level on stderr: debug, info, warn or error")
	// For `ssh` run by OpenSSH as a ProxyCommand, where flags are hard
	// to add.
	option.Scoped(cmd, "log-level")
}

// workspaceTunnel is a tunnel from this CLI to one workspace's agent.
type workspaceTunnel struct {
	conn      *tunnel.Conn
	agentIP   netip.Addr
	workspace tether.Workspace
	derpMap   *tailcfg.DERPMap // as the server gave it, for diagnosis
	stop      func()
	*agentWatch
	tl        *timeline
	coordDone chan struct{} // closed when the coordination client's Run returns
	coordErr  error         // why it returned; read after coordDone
}

// agentWatch hears from the tunnel when the workspace's agent is gone, in
// which case the tunnel has ended every connection with it.
type agentWatch struct {
	notices chan error // each time the agent is gone; dropped when full

	mu  sync.Mutex
	ws  tether.Workspace // guarded by mu; set once its lookup answers
	err error            // guarded by mu; why the agent was last gone
}

func newAgentWatch(ws tether.Workspace) *agentWatch {
	return &agentWatch{ws: ws, notices: make(chan error, 4)}
}

// peerGone is the tunnel's peer-gone callback: it must not block.
func (w *agentWatch) peerGone(id uuid.UUID, why error) {
	w.mu.Lock()
	if id != w.ws.ID || id == uuid.Nil {
		w.mu.Unlock()
		return
	}
	err := agentGoneError(w.ws, why)
	w.err = err
	w.mu.Unlock()
	select {
	case w.notices <- err:
	default:
	}
}

// setWorkspace names the workspace whose agent is watched.
func (w *agentWatch) setWorkspace(ws tether.Workspace) {
	w.mu.Lock()
	w.ws = ws
	w.mu.Unlock()
}

// gone returns why the agent was last gone, or nil.
func (w *agentWatch) gone() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// agentGoneError says what happened to the connections with a workspace
// whose agent is gone.
func agentGoneError(ws tether.Workspace, why error) error {
	name := ws.Owner + "/" + ws.Name
	switch {
	case errors.Is(why, tunnel.ErrPeerRestarted):
		return fmt.Errorf("the agent of %s restarted; the connection to the old one is gone", name)
	case errors.Is(why, tunnel.ErrPeerUnreachable):
		return fmt.Errorf("lost the connection to %s: its agent stopped answering (the server lost it too; is it still running?)", name)
	case errors.Is(why, tunnel.ErrPeerLeft):
		return fmt.Errorf("the agent of %s disconnected", name)
	}
	return fmt.Errorf("lost the connection to %s: %w", name, why)
}

// progress prints what a slow connection is waiting for, once per phase,
// and only when the phase takes long enough to notice.
type progress struct {
	w     io.Writer
	mu    sync.Mutex
	shown map[string]bool
}

func (p *progress) after(d time.Duration, msg string) (cancel func()) {
	t := time.AfterFunc(d, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.shown[msg] {
			p.shown[msg] = true
			fmt.Fprintln(p.w, msg)
		}
	})
	return func() { t.Stop() }
}

// noticeDelay is how long a phase may take before the CLI says what it is
// waiting for.
const noticeDelay = 750 * time.Millisecond

// dialWorkspace opens a tunnel to the workspace named by arg and waits until
// its agent answers, saying on stderr what it is waiting for when that takes
// a while. Close the result with stop.
//
// Far from the server every step that waits for the one before it costs a
// round trip, so what needs only the command line starts at once: the
// workspace's lookup, the connection info, and the coordination WebSocket
// (whose path names the workspace as the user did). The tunnel starts
// with the connection info this CLI saved last time, if any, and so
// reaches its relay while the fresh info is on its way; the fresh info is
// compared before anything else is done with the tunnel, which starts over
// with it if it differs. Each step's start and end go to the debug log
// (timeline.go).
func (r *root) dialWorkspace(ctx context.Context, arg string, f tunnelFlags) (*workspaceTunnel, error) {
	owner, name, err := splitWorkspace(arg)
	if err != nil {
		return nil, err
	}
	c, err := r.client()
	if err != nil {
		return nil, err
	}
	logger, err := newLogger(r.env.Stderr, f.logLevel)
	if err != nil {
		return nil, err
	}
	tl := newTimeline(logger, r.start)
	dctx, cancelDial := context.WithCancel(ctx)
	defer cancelDial() // ends the lookups that lost their use

	wsRes := goResult(func() (tether.Workspace, error) {
		end := tl.begin("workspace")
		defer end()
		return c.Workspace(dctx, owner, name)
	})
	infoRes := goResult(func() (tether.ConnectionInfo, error) {
		end := tl.begin("connection-info")
		defer end()
		return c.ConnectionInfo(dctx)
	})
	id := uuid.New()
	query := url.Values{"id": {id.String()}, "version": {tether.CoordinateProtocolVersion}}
	dialCoord := func(ctx context.Context) (*websocket.Conn, error) {
		ws, err := c.DialWebSocket(ctx, client.CoordinatePath(owner, name), query)
		if code := tether.ErrorCode(err); code != "" && code != tether.EUNAVAILABLE && code != tether.EINTERNAL {
			return nil, coordclient.Permanent(err) // refused: retrying cannot help
		}
		return ws, err
	}
	// The first coordination WebSocket is dialed now, the tunnel's
	// coordination client takes it when it starts; later ones it dials.
	// Not bound to dctx: the tunnel keeps the socket.
	coordCtx, cancelCoordDial := context.WithCancel(context.WithoutCancel(ctx))
	firstCoord := goResult(func() (*websocket.Conn, error) {
		end := tl.begin("coordination-dial")
		defer end()
		return dialCoord(coordCtx)
	})
	var once sync.Once
	coordDial := func(ctx context.Context) (*websocket.Conn, error) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return dialCoord(ctx)
		}
		select {
		case <-firstCoord.done:
			return firstCoord.v, firstCoord.err
		case <-ctx.Done():
			go func() { // given up on: close it once dialed
				if ws, err := firstCoord.wait(context.Background()); err == nil {
					ws.CloseNow()
				}
			}()
			return nil, ctx.Err()
		}
	}
	defer func() {
		// A socket nobody took (the dial failed first) must not leak.
		cancelCoordDial()
		once.Do(func() {
			if ws, err := firstCoord.wait(context.Background()); err == nil {
				ws.CloseNow()
			}
		})
	}()

	dir := config.Dir(r.configDir)
	cacheKey := c.URL.String()
	info, cached := dir.ConnectionInfo(cacheKey)
	if !cached {
		if info, err = infoRes.wait(ctx); err != nil {
			return nil, err
		}
	}
	t, err := r.startTunnel(ctx, id, c, logger, tl, info, f, coordDial)
	if err != nil {
		return nil, err
	}
	ws, err := wsRes.wait(ctx)
	if err != nil {
		t.stop()
		return nil, err
	}
	if cached {
		fresh, err := infoRes.wait(ctx)
		if err != nil {
			t.stop()
			return nil, err
		}
		if !sameConnectionInfo(info, fresh) {
			// Nothing has gone through the tunnel yet: start over.
			tl.mark("connection-info-changed")
			t.stop()
			info = fresh
			if t, err = r.startTunnel(ctx, id, c, logger, tl, info, f, dialCoord); err != nil {
				return nil, err
			}
			cached = false
		}
	}
	if !cached {
		if err := dir.SaveConnectionInfo(cacheKey, info); err != nil {
			logger.Debug("could not save the connection info", "error", err)
		}
	}
	t.workspace = ws
	t.agentIP = tether.TunnelIP(ws.ID)
	t.agentWatch.setWorkspace(ws)
	if err := r.awaitAgent(ctx, t, tl); err != nil {
		t.stop()
		return nil, err
	}
	go r.endWhenRevoked(t.coordDone, &t.coordErr, t.stop)
	return t, nil
}

// startTunnel starts a tunnel with peer ID id and its coordination
// (dialed by dial), configured by info.
func (r *root) startTunnel(ctx context.Context, id uuid.UUID, c *client.Client, logger *slog.Logger, tl *timeline, info tether.ConnectionInfo, f tunnelFlags, dial func(context.Context) (*websocket.Conn, error)) (*workspaceTunnel, error) {
	end := tl.begin("tunnel-start")
	conn, err := tunnel.New(ctx, tunnel.Options{
		Logger:              logger.With(slog.String("component", "tunnel")),
		ID:                  id,
		DERPMap:             info.DERPMap,
		BlockEndpoints:      info.DisableDirect || f.disableDirect || f.forceRelay,
		DisableUDPRelay:     f.disableDirect,
		DERPPlainHTTP:       c.URL.Scheme == "http",
		DERPForceWebSockets: info.DERPForceWebSockets,
		Timeline:            tl.mark,
	})
	end()
	if err != nil {
		return nil, fmt.Errorf("start tunnel: %w", err)
	}
	coord := coordclient.New(coordclient.Options{
		Logger:     logger.With(slog.String("component", "coordination")),
		Tunnel:     conn,
		MaxBackoff: 5 * time.Second,
		Dial:       dial,
		// The command exits once the tunnel stops: the agent hears the
		// goodbye without the CLI waiting a server round trip for the
		// coordinator's answer to it.
		QuickLeave: true,
	})
	conn.SetNodeCallback(coord.SetNode)
	// The workspace is filled in once its lookup answers; the agent's
	// peer ID is the workspace's.
	watch := newAgentWatch(tether.Workspace{})
	conn.SetPeerGoneCallback(watch.peerGone)
	t := &workspaceTunnel{conn: conn, derpMap: info.DERPMap, agentWatch: watch, tl: tl, coordDone: make(chan struct{})}
	cctx, cancel := context.WithCancel(context.Background())
	go func() {
		t.coordErr = coord.Run(cctx)
		close(t.coordDone)
	}()
	var stopOnce sync.Once
	t.stop = func() {
		stopOnce.Do(func() {
			end := tl.begin("tunnel-stop")
			defer end()
			cancel()
			<-t.coordDone
			conn.Close()
		})
	}
	return t, nil
}

// awaitAgent waits until the workspace's agent answers through t.
func (r *root) awaitAgent(ctx context.Context, t *workspaceTunnel, tl *timeline) error {
	ws := t.workspace
	p := &progress{w: r.env.Stderr, shown: map[string]bool{}}
	var hint func()
	if ws.AgentStatus != tether.AgentConnected {
		fmt.Fprintf(r.env.Stderr, "Waiting for the agent of %s/%s to connect (last seen %s)…\n", ws.Owner, ws.Name, ago(ws.LastSeen, time.Now()))
		hint = func() {}
	} else {
		hint = p.after(noticeDelay, fmt.Sprintf("Connecting to %s/%s…", ws.Owner, ws.Name))
	}
	end := tl.begin("reachable")
	reach := make(chan error, 1)
	go func() { reach <- t.conn.AwaitReachable(ctx, t.agentIP) }()
	var err error
	select {
	case err = <-reach:
	case <-t.coordDone:
		err = t.coordErr
		if err == nil {
			err = ctx.Err()
		}
	}
	end()
	hint()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("gave up connecting to %s/%s: %w", ws.Owner, ws.Name, ctx.Err())
		}
		return err
	}
	return nil
}

// sameConnectionInfo reports whether a tunnel configured by a works as one
// configured by b.
func sameConnectionInfo(a, b tether.ConnectionInfo) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

// result is a value computed in the background.
type result[T any] struct {
	done chan struct{}
	v    T
	err  error
}

func goResult[T any](fn func() (T, error)) *result[T] {
	r := &result[T]{done: make(chan struct{})}
	go func() {
		r.v, r.err = fn()
		close(r.done)
	}()
	return r
}

// wait returns the value, or ctx's error if ctx ends first.
func (r *result[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-r.done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// endWhenRevoked waits for the tunnel's coordination to end (done, then
// *err says why). If the server took the user's access away (suspended,
// deleted, signed out, or no longer allowed to reach the workspace), the
// agent has dropped this peer already: the tunnel closes, and the command
// ends with the server's reason instead of hanging on a dead tunnel.
func (r *root) endWhenRevoked(done <-chan struct{}, err *error, stop func()) {
	<-done
	var revoked *coordclient.AccessRevokedError
	if !errors.As(*err, &revoked) {
		return
	}
	if r.abort != nil {
		r.abort(revoked)
	}
	stop()
}

// dial opens a TCP connection to a port of the agent.
func (t *workspaceTunnel) dial(ctx context.Context, port uint16) (net.Conn, error) {
	return t.conn.DialContext(ctx, "tcp", netip.AddrPortFrom(t.agentIP, port))
}
