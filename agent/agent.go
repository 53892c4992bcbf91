// Package agent runs inside a workspace. It dials the server outbound only,
// holds one WebSocket to it for as long as it runs (reconnecting with backoff
// when the server goes away), and serves SSH, the web terminal's PTY, port
// forwards and speed tests on its tunnel address.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/coder/websocket"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/client"
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

// Agent is a running workspace agent.
type Agent struct {
	client  *client.Client
	logger  *slog.Logger
	version string
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
	return &Agent{client: opts.Client, logger: logger, version: opts.Version}, nil
}

// Backoff bounds for reconnecting to the server. The jitter spreads many
// agents' reconnections after a server restart.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Run connects to the server and serves until ctx is done or the server
// refuses the agent's token (which retrying cannot fix). It returns nil when
// ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	backoff := minBackoff
	for {
		start := time.Now()
		err := a.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if code := tether.ErrorCode(err); code == tether.EUNAUTHORIZED || code == tether.EFORBIDDEN {
			return fmt.Errorf("server refused the agent: %w", err)
		}
		if time.Since(start) > time.Minute {
			backoff = minBackoff // a long session: the server was fine until now
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		a.logger.Warn("lost connection to server; reconnecting", slog.Any("err", err), slog.Duration("in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// runOnce holds one connection to the server until it breaks.
func (a *Agent) runOnce(ctx context.Context) error {
	manifest, err := a.client.AgentManifest(ctx)
	if err != nil {
		return fmt.Errorf("fetch manifest: %w", err)
	}
	conn, err := a.client.DialWebSocket(ctx, "/api/v2/agent/connect", url.Values{"version": {a.version}})
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	a.logger.Info("connected to server", slog.String("url", a.client.URL.String()),
		slog.String("workspace", manifest.Owner+"/"+manifest.WorkspaceName))
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			if s := websocket.CloseStatus(err); s != -1 {
				return fmt.Errorf("server closed the connection: %w", err)
			}
			return err
		}
	}
}
