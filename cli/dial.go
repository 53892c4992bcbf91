package cli

import (
	"context"
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
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/tunnel"
	"tailscale.com/tailcfg"
)

// tunnelFlags are the flags of every command that opens a tunnel.
type tunnelFlags struct {
	disableDirect bool
	logLevel      string
}

func (f *tunnelFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.disableDirect, "disable-direct", false, "relay all traffic through DERP, never direct (for diagnosis)")
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
}

// agentWatch hears from the tunnel when the workspace's agent is gone, in
// which case the tunnel has ended every connection with it.
type agentWatch struct {
	ws      tether.Workspace
	notices chan error // each time the agent is gone; dropped when full

	mu  sync.Mutex
	err error // guarded by mu; why the agent was last gone
}

func newAgentWatch(ws tether.Workspace) *agentWatch {
	return &agentWatch{ws: ws, notices: make(chan error, 4)}
}

// peerGone is the tunnel's peer-gone callback: it must not block.
func (w *agentWatch) peerGone(id uuid.UUID, why error) {
	if id != w.ws.ID {
		return
	}
	err := agentGoneError(w.ws, why)
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	select {
	case w.notices <- err:
	default:
	}
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
	ws, err := c.Workspace(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	info, err := c.ConnectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := tunnel.New(ctx, tunnel.Options{
		Logger:              logger.With(slog.String("component", "tunnel")),
		ID:                  uuid.New(),
		DERPMap:             info.DERPMap,
		BlockEndpoints:      info.DisableDirect || f.disableDirect,
		DERPPlainHTTP:       c.URL.Scheme == "http",
		DERPForceWebSockets: info.DERPForceWebSockets,
	})
	if err != nil {
		return nil, fmt.Errorf("start tunnel: %w", err)
	}
	query := url.Values{"id": {conn.ID().String()}, "version": {tether.CoordinateProtocolVersion}}
	coord := coordclient.New(coordclient.Options{
		Logger:     logger.With(slog.String("component", "coordination")),
		Tunnel:     conn,
		MaxBackoff: 5 * time.Second,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			ws, err := c.DialWebSocket(ctx, client.CoordinatePath(ws.Owner, ws.Name), query)
			if code := tether.ErrorCode(err); code != "" && code != tether.EUNAVAILABLE && code != tether.EINTERNAL {
				return nil, coordclient.Permanent(err) // refused: retrying cannot help
			}
			return ws, err
		},
	})
	conn.SetNodeCallback(coord.SetNode)
	watch := newAgentWatch(ws)
	conn.SetPeerGoneCallback(watch.peerGone)
	cctx, cancel := context.WithCancel(context.Background())
	coordDone := make(chan struct{})
	var coordErr error // why coord.Run returned; read after coordDone
	go func() {
		coordErr = coord.Run(cctx)
		close(coordDone)
	}()
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			cancel()
			<-coordDone
			conn.Close()
		})
	}

	agentIP := tether.TunnelIP(ws.ID)
	p := &progress{w: r.env.Stderr, shown: map[string]bool{}}
	var hint func()
	if ws.AgentStatus != tether.AgentConnected {
		fmt.Fprintf(r.env.Stderr, "Waiting for the agent of %s/%s to connect (last seen %s)…\n", ws.Owner, ws.Name, ago(ws.LastSeen, time.Now()))
		hint = func() {}
	} else {
		hint = p.after(noticeDelay, fmt.Sprintf("Connecting to %s/%s…", ws.Owner, ws.Name))
	}
	reach := make(chan error, 1)
	go func() { reach <- conn.AwaitReachable(ctx, agentIP) }()
	select {
	case err = <-reach:
	case <-coordDone:
		err = coordErr
		if err == nil {
			err = ctx.Err()
		}
	}
	hint()
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gave up connecting to %s/%s: %w", ws.Owner, ws.Name, ctx.Err())
		}
		return nil, err
	}
	go r.endWhenRevoked(coordDone, &coordErr, stop)
	return &workspaceTunnel{conn: conn, agentIP: agentIP, workspace: ws, derpMap: info.DERPMap, stop: stop, agentWatch: watch}, nil
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
