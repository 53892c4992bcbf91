// Package agent runs inside a workspace. It dials the server outbound only,
// holds one coordination WebSocket to it for as long as it runs (reconnecting
// with backoff when the server goes away, without dropping tunnels that are
// up), and serves on its tunnel address: SSH, `tether ssh`'s commands
// without SSH (agent/execd), the web terminal's reconnecting PTY, speed
// tests, and every other TCP or UDP port forwarded to the workspace's own
// loopback.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/agent/execd"
	"github.com/tetherdev/tether/agent/reconnectingpty"
	"github.com/tetherdev/tether/agent/rtcterm"
	"github.com/tetherdev/tether/agent/sshd"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/coordinator/coordclient"
	"github.com/tetherdev/tether/internal/retry"
	"github.com/tetherdev/tether/speedtest"
	"github.com/tetherdev/tether/tunnel"
)

// Options configure an Agent.
type Options struct {
	// Client reaches the server with the workspace's agent token. Required.
	Client *client.Client
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// Version is reported to the server.
	Version string
}

// Agent is a workspace agent. Run it once.
type Agent struct {
	client  *client.Client
	logger  *slog.Logger
	version string

	ctx      context.Context // Run's context, for work started by the tunnel
	wg       sync.WaitGroup  // services and forwards
	sessions sessionStats    // for Collector (metrics.go)

	mu   sync.Mutex
	conn *tunnel.Conn // while Run runs; guarded by mu
}

// tunnel returns the running tunnel, or nil.
func (a *Agent) tunnel() *tunnel.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

func (a *Agent) setTunnel(c *tunnel.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conn = c
}

// New returns an agent for opts. Call Run to start it.
func New(opts Options) (*Agent, error) {
	if opts.Client == nil {
		return nil, errors.New("agent: Client is required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{client: opts.Client, logger: logger, version: opts.Version, sessions: newSessionStats()}, nil
}

// Backoff bounds for retrying the server. The jitter spreads many agents'
// reconnections after a server restart.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Retry spacing while another agent holds the workspace (the server
// refuses this one with ECONFLICT): from duplicateMinRetry, doubling up to
// duplicateMaxRetry. The other agent may be on its way out (a restart that
// overlaps, a rolling update), so this one waits to take over rather than
// exiting; slowly, since it may also be a clone that stays refused, and
// each refusal is logged.
const (
	duplicateMinRetry = 5 * time.Second
	duplicateMaxRetry = 30 * time.Second
)

// duplicateRetry is the wait after the nth refusal in a row.
func duplicateRetry(n int) time.Duration {
	d := duplicateMinRetry
	for ; n > 1 && d < duplicateMaxRetry; n-- {
		d *= 2
	}
	return min(d, duplicateMaxRetry)
}

// clientLostGrace is how long the agent keeps the connections of a client
// (a CLI, or the server's web proxy) that the server lost and that no
// longer answers, before ending them and so hanging up its SSH sessions'
// programs. Longer than the CLI's wait for a lost agent
// (tunnel.DefaultLostPeerGrace): a laptop that sleeps or changes networks
// for a moment keeps its sessions, and a CLI that died does not leave its
// programs running (they used to wait for the lost client to expire, 15
// minutes).
const clientLostGrace = time.Minute

// isPermanent reports whether retrying err cannot help: the server refused
// the agent's token.
func isPermanent(err error) bool {
	code := tether.ErrorCode(err)
	return code == tether.EUNAUTHORIZED || code == tether.EFORBIDDEN
}

// Run serves until ctx is done or the server refuses the agent's token. It
// returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.ctx = ctx
	manifest, err := a.fetchManifest(ctx)
	if err != nil || ctx.Err() != nil {
		return err
	}
	log := a.logger.With(slog.String("workspace", manifest.Owner+"/"+manifest.WorkspaceName))
	conn, err := tunnel.New(ctx, tunnel.Options{
		Logger:              log.With(slog.String("component", "tunnel")),
		ID:                  manifest.WorkspaceID,
		DERPMap:             manifest.Connection.DERPMap,
		BlockEndpoints:      manifest.Connection.DisableDirect,
		DERPPlainHTTP:       a.client.URL.Scheme == "http",
		DERPForceWebSockets: manifest.Connection.DERPForceWebSockets,
		LostPeerGrace:       clientLostGrace,
	})
	if err != nil {
		return fmt.Errorf("start tunnel: %w", err)
	}
	a.setTunnel(conn)
	defer func() {
		// Stop taking connections, then wait for those in progress.
		a.setTunnel(nil)
		cancel()
		conn.Close()
		a.wg.Wait()
	}()
	if err := a.serve(ctx, conn, manifest, log); err != nil {
		return err
	}

	refusals := 0 // in a row, because another agent holds the workspace; only the dial loop uses it
	// connected closes when the server first takes this agent's
	// coordination: the startup script waits for it.
	connected := make(chan struct{})
	var connectedOnce sync.Once
	coord := coordclient.New(coordclient.Options{
		Logger:     log.With(slog.String("component", "coordination")),
		Tunnel:     conn,
		MaxBackoff: maxBackoff,
		Dial: func(ctx context.Context) (*websocket.Conn, error) {
			ws, err := a.client.DialWebSocket(ctx, "/api/v2/agent/connect", url.Values{
				"version":            {a.version},
				"coordinate_version": {tether.CoordinateProtocolVersion},
			})
			switch {
			case err == nil:
				connectedOnce.Do(func() { close(connected) })
				if refusals > 0 {
					log.Info("connected: the other agent with this workspace's token is gone, and this one took its place")
				}
				refusals = 0
			case isPermanent(err):
				return nil, coordclient.Permanent(err)
			case tether.ErrorCode(err) == tether.ECONFLICT:
				refusals++
				wait := duplicateRetry(refusals)
				log.Error("the server refused this agent: "+tether.ErrorMessage(err)+
					". This agent stays disconnected, and takes over if the other one leaves.",
					slog.Int("refusals", refusals), slog.Duration("retry_in", wait))
				return nil, coordclient.RetryAfter(err, wait)
			}
			return ws, err
		},
	})
	conn.SetNodeCallback(coord.SetNode)
	if manifest.StartupScript != "" {
		timeout := time.Duration(manifest.StartupScriptTimeout)
		if timeout <= 0 {
			timeout = time.Duration(tether.DefaultStartupScriptTimeout)
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-connected:
			}
			a.runStartupScript(ctx, manifest.StartupScript, timeout, sessionEnv(manifest), log.With(slog.String("component", "startup")))
		}()
	}
	log.Info("agent running", slog.String("tunnel_ip", conn.Addr().String()))
	if err := coord.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("server refused the agent: %w", err)
	}
	return nil
}

// fetchManifest asks the server who this agent is, retrying while the
// server cannot be reached.
func (a *Agent) fetchManifest(ctx context.Context) (tether.AgentManifest, error) {
	b := retry.Backoff{Min: minBackoff, Max: maxBackoff}
	for {
		m, err := a.client.AgentManifest(ctx)
		if err == nil {
			return m, nil
		}
		if isPermanent(err) {
			return m, fmt.Errorf("server refused the agent: %w", err)
		}
		wait := b.Next()
		a.logger.Warn("cannot reach server; retrying", slog.Any("err", err), slog.Duration("in", wait))
		if !retry.Sleep(ctx, wait) {
			return m, nil
		}
	}
}

// sessionEnv is what the agent adds to the environment of what it runs
// for the workspace's user: sessions and the startup script.
func sessionEnv(m tether.AgentManifest) []string {
	return []string{"TETHER_WORKSPACE=" + m.WorkspaceName, "TETHER_WORKSPACE_OWNER=" + m.Owner}
}

// serve starts the agent's services on the tunnel.
func (a *Agent) serve(ctx context.Context, conn *tunnel.Conn, m tether.AgentManifest, log *slog.Logger) error {
	env := sessionEnv(m)
	ssh, err := sshd.New(sshd.Options{Logger: log.With(slog.String("component", "ssh")), Env: env})
	if err != nil {
		return fmt.Errorf("start SSH server: %w", err)
	}
	exec := execd.New(execd.Options{Logger: log.With(slog.String("component", "exec")), Env: env})
	pty := reconnectingpty.New(reconnectingpty.Options{Logger: log.With(slog.String("component", "pty")), Env: env})
	rtc := rtcterm.New(rtcterm.Options{Logger: log.With(slog.String("component", "pty.direct")), PTY: pty})

	services := []struct {
		name  string // also the session kind of its connections
		port  uint16
		serve func(net.Listener) error
		close func() error
	}{
		{sessionSSH, tether.AgentSSHPort, ssh.Serve, ssh.Close},
		{sessionSSH, tether.AgentExecPort, exec.Serve, exec.Close},
		{sessionPTY, tether.AgentPTYPort, pty.Serve, pty.Close},
		{sessionPTY, tether.AgentTerminalPort, pty.ServePositions, nil},
		{sessionPTYDirect, tether.AgentRTCPort, rtc.Serve, rtc.Close},
		{sessionSpeedtest, tether.AgentSpeedtestPort, func(l net.Listener) error { return speedtest.Serve(ctx, l) }, nil},
	}
	for _, svc := range services {
		tl, err := conn.Listen("tcp", svc.port)
		if err != nil {
			return fmt.Errorf("listen for %s on the tunnel: %w", svc.name, err)
		}
		l := &countingListener{Listener: tl, kind: svc.name, stats: a.sessions}
		a.wg.Add(2)
		go func() {
			defer a.wg.Done()
			if err := svc.serve(l); err != nil && ctx.Err() == nil {
				log.Error("service stopped", slog.String("service", svc.name), slog.Any("err", err))
			}
		}()
		go func() {
			defer a.wg.Done()
			<-ctx.Done()
			l.Close()
			if svc.close != nil {
				svc.close()
			}
		}()
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.watchApps(ctx, m.Apps, log.With(slog.String("component", "apps")))
	}()
	go func() {
		defer a.wg.Done()
		t := time.NewTicker(connectionsPoll)
		defer t.Stop()
		a.reportConnections(ctx, conn.Status, t.C, log)
	}()
	conn.SetForwardTCP(a.track(sessionForwardTCP, a.forwardTCP))
	conn.SetForwardUDP(a.track(sessionForwardUDP, a.forwardUDP))
	return nil
}

// track wraps a forward handler so that Run waits for it, counting it as
// a session of kind.
func (a *Agent) track(kind string, fn func(net.Conn, netip.AddrPort)) func(net.Conn, netip.AddrPort) {
	return func(c net.Conn, dst netip.AddrPort) {
		a.wg.Add(1)
		defer a.wg.Done()
		defer a.sessions.start(kind)()
		fn(c, dst)
	}
}
