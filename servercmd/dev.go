package servercmd

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/agent"
	"github.com/tetherdev/tether/cli/config"
	"github.com/tetherdev/tether/client"
	"github.com/tetherdev/tether/store"
)

// The --dev deployment's fixed names.
const (
	devAdmin     = "admin"
	devEmail     = "admin@localhost"
	devWorkspace = "dev"
	// devPasswordFile keeps the generated admin password in the data
	// directory, so that a restarted demo can sign in again and print it.
	devPasswordFile = "dev-admin-password"
)

type devOptions struct {
	accessURL *url.URL
	dataDir   string
	configDir string
	store     store.Store
	logger    *slog.Logger
	stdout    io.Writer
	version   string
	// metrics, when set, gets the in-process agent's metrics beside the
	// server's.
	metrics prometheus.Registerer
}

// startDev sets up the demo through the server's own API (as a user would),
// starts the dev workspace's agent in this process, and returns a function
// that stops it.
func startDev(ctx context.Context, o devOptions) (stop func(), err error) {
	c := &client.Client{URL: o.accessURL}
	password, err := devSignIn(ctx, c, o.dataDir)
	if err != nil {
		return nil, err
	}
	if o.configDir == "" {
		o.configDir = config.DefaultDir()
	}
	if err := config.Dir(o.configDir).Save(o.accessURL.String(), c.SessionToken); err != nil {
		return nil, err
	}

	agentToken, err := devWorkspaceToken(ctx, c, o.store)
	if err != nil {
		return nil, err
	}
	ac := &client.Client{URL: o.accessURL, AgentToken: agentToken}
	a, err := agent.New(agent.Options{Client: ac, Logger: o.logger.With(slog.String("component", "agent")), Version: o.version})
	if err != nil {
		return nil, err
	}
	if o.metrics != nil {
		o.metrics.MustRegister(a.Collector())
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(actx); err != nil {
			o.logger.Error("dev agent stopped", slog.Any("err", err))
		}
	}()

	fmt.Fprintf(o.stdout, `
Tether is running at %s (dev mode, data in %s).

  Sign in:     %s  as %s / %s
  CLI:         credentials written to %s
  Workspace:   %q, its agent runs in this process

Try:  tether list
      tether ssh %s

`, o.accessURL, o.dataDir, o.accessURL, devAdmin, password, o.configDir, devWorkspace, devWorkspace)
	return func() { cancel(); wg.Wait() }, nil
}

// devSignIn creates the admin on a fresh data directory, or signs in with
// the saved password, leaving the session token in c.
func devSignIn(ctx context.Context, c *client.Client, dataDir string) (string, error) {
	pwFile := filepath.Join(dataDir, devPasswordFile)
	exists, err := c.HasFirstUser(ctx)
	if err != nil {
		return "", err
	}
	if !exists {
		password := randomString(12)
		if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("save admin password: %w", err)
		}
		resp, err := c.CreateFirstUser(ctx, tether.CreateFirstUserRequest{Username: devAdmin, Email: devEmail, Password: password})
		if err != nil {
			return "", fmt.Errorf("create admin: %w", err)
		}
		c.SessionToken = resp.SessionToken
		return password, nil
	}
	b, err := os.ReadFile(pwFile)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s holds a deployment that --dev did not create; use another --data-dir", dataDir)
	} else if err != nil {
		return "", err
	}
	password := strings.TrimSpace(string(b))
	resp, err := c.Login(ctx, tether.LoginRequest{Login: devAdmin, Password: password})
	if err != nil {
		return "", fmt.Errorf("sign in as %s: %w", devAdmin, err)
	}
	c.SessionToken = resp.SessionToken
	return password, nil
}

// devWorkspaceToken creates the dev workspace, or gives the existing one a
// new agent token (tokens are stored hashed, so the old one is unknown).
func devWorkspaceToken(ctx context.Context, c *client.Client, st store.Store) (string, error) {
	resp, err := c.CreateWorkspace(ctx, tether.CreateWorkspaceRequest{Name: devWorkspace})
	if err == nil {
		return resp.AgentToken, nil
	}
	if tether.ErrorCode(err) != tether.ECONFLICT {
		return "", fmt.Errorf("create workspace %s: %w", devWorkspace, err)
	}
	ws, err := c.Workspace(ctx, "me", devWorkspace)
	if err != nil {
		return "", err
	}
	token := randomString(32)
	if err := st.SetAgentTokenHash(ctx, ws.ID, store.HashToken(token)); err != nil {
		return "", fmt.Errorf("renew agent token: %w", err)
	}
	return token, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
