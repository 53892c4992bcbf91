// Package wsproxycmd is the `tether wsproxy server` command: a workspace
// proxy, a server without a database near a group of users. It registers
// with the primary (its first heartbeat), starts its relay region with the
// deployment's mesh key and its STUN server, serves the web terminal and
// apps (server.Proxy), and heartbeats until the primary refuses its token.
// It is wiring, like servercmd, and apart from package cli so that the
// client commands never link the server.
package wsproxycmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/internal/httpserve"
	"github.com/tetherdev/tether/internal/logging"
	"github.com/tetherdev/tether/internal/metrics"
	"github.com/tetherdev/tether/relay"
	"github.com/tetherdev/tether/server"
	"github.com/tetherdev/tether/site"
)

// Settings are the flags of `tether wsproxy server`, each also read from
// its TETHER_ environment variable.
type Settings struct {
	PrimaryAccessURL        string
	ProxyToken              string
	AccessURL               string
	HTTPAddress             string
	WildcardAccessURL       string
	TLSCertFile             string
	TLSKeyFile              string
	DERPServerSTUNAddresses []string
	LogLevel                string
	LogFormat               string
	PprofAddress            string
}

// Command returns `tether wsproxy server`.
func Command(stdout, stderr io.Writer, version string) *cobra.Command {
	var s Settings
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a workspace proxy: the web terminal, apps and a relay region near a group of users",
		Long: "Run a workspace proxy. Register it first on the primary with `tether wsproxy create NAME`,\n" +
			"which prints its token. Users sign in at the primary only; the proxy serves their terminals and\n" +
			"apps, and runs a relay region of its own that the primary adds to every peer's DERP map.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The libraries' global log (the STUN server's) goes to the
			// proxy's logger too, for the life of the process.
			logger, err := logging.New(stderr, s.LogLevel, s.LogFormat)
			if err != nil {
				return err
			}
			defer logging.CaptureStdLog(logger)()
			return run(cmd.Context(), s, logger, stdout, version)
		},
	}
	s.bindFlags(cmd.Flags())
	option.Deployment(cmd) // every flag is TETHER_<FLAG>, as the server's
	return cmd
}

func (s *Settings) bindFlags(f *pflag.FlagSet) {
	f.StringVar(&s.PrimaryAccessURL, "primary-access-url", "", "access URL of the primary Tether server (required)")
	f.StringVar(&s.ProxyToken, "proxy-token", "", "the proxy's token, as tether wsproxy create printed it (required)")
	f.StringVar(&s.AccessURL, "access-url", "", "external URL where browsers and peers reach this proxy (default: http:// + --http-address)")
	f.StringVar(&s.HTTPAddress, "http-address", "127.0.0.1:3001", "address to listen on for HTTP(S)")
	f.StringVar(&s.WildcardAccessURL, "wildcard-access-url", "", "serve subdomain apps at APP--WS--USER.<domain>: a pattern like *.apps.proxy.example.com whose hosts resolve to this proxy")
	f.StringVar(&s.TLSCertFile, "tls-cert-file", "", "PEM certificate to serve HTTPS with (with --tls-key-file)")
	f.StringVar(&s.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringSliceVar(&s.DERPServerSTUNAddresses, "derp-server-stun-addresses", []string{"0.0.0.0:3478"}, "UDP addresses for the proxy's STUN server (comma separated), or disable")
	f.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&s.LogFormat, "log-format", "text", "text, or json for one JSON object a line")
	f.StringVar(&s.PprofAddress, "pprof-address", "", "serve Go's profiler at /debug/pprof/ on this loopback address, such as 127.0.0.1:6061 (off by default)")
}

// registerTimeout bounds the first heartbeat's retries: a proxy whose
// primary is down at start says so instead of waiting forever.
const registerTimeout = 2 * time.Minute

// Run runs the proxy until ctx ends or the primary refuses its token.
func Run(ctx context.Context, s Settings, stdout, stderr io.Writer, version string) error {
	logger, err := logging.New(stderr, s.LogLevel, s.LogFormat)
	if err != nil {
		return err
	}
	return run(ctx, s, logger, stdout, version)
}

// run is Run with the logger made.
func run(ctx context.Context, s Settings, logger *slog.Logger, stdout io.Writer, version string) error {
	if s.PrimaryAccessURL == "" || s.ProxyToken == "" {
		return errors.New("--primary-access-url and --proxy-token are required: `tether wsproxy create NAME` on the primary prints the token")
	}
	primary, err := url.Parse(s.PrimaryAccessURL)
	if err != nil || (primary.Scheme != "http" && primary.Scheme != "https") || primary.Host == "" {
		return fmt.Errorf("--primary-access-url %q must be an http:// or https:// URL with a host", s.PrimaryAccessURL)
	}
	primary.Path, primary.RawQuery = "", ""
	if s.PprofAddress != "" {
		l, err := metrics.ListenPprof(s.PprofAddress, logger)
		if err != nil {
			return err
		}
		defer l.Close()
	}
	tlsConfig, err := httpserve.TLSConfig(s.TLSCertFile, s.TLSKeyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.HTTPAddress)
	if err != nil {
		return fmt.Errorf("listen on --http-address %s: %w", s.HTTPAddress, err)
	}
	defer ln.Close()
	accessURL, err := httpserve.AccessURL(s.AccessURL, ln.Addr(), tlsConfig != nil)
	if err != nil {
		return err
	}

	derpLogger := logger.With(slog.String("component", "derp"))
	var stun *relay.STUN
	stunPort := 0
	if addrs := s.DERPServerSTUNAddresses; len(addrs) > 0 && !(len(addrs) == 1 && strings.EqualFold(addrs[0], "disable")) {
		if stun, err = relay.ListenSTUN(addrs, derpLogger); err != nil {
			return fmt.Errorf("%w (choose other --derp-server-stun-addresses, or disable)", err)
		}
		defer stun.Close()
		stunPort = stun.Port()
	}

	hc := &http.Client{Timeout: 30 * time.Second}
	first, err := server.HeartbeatRequest(accessURL, s.WildcardAccessURL, version, stunPort)
	if err != nil {
		return err
	}
	reg, err := register(ctx, hc, primary, s.ProxyToken, first, logger)
	if err != nil {
		return err
	}

	keys := &primaryKeys{hc: hc, primary: primary, token: s.ProxyToken}
	d, err := relay.NewDERP(relay.Options{Logger: derpLogger, Keys: keys, MeshKey: reg.MeshKey})
	if err != nil {
		return err
	}
	defer d.Close()
	d.SetMeshPeers(meshPeers(reg.MeshPeers))

	p, err := server.NewProxy(server.ProxyOptions{
		Logger:            logger.With(slog.String("component", "wsproxy")),
		PrimaryURL:        primary,
		Token:             s.ProxyToken,
		AccessURL:         accessURL,
		WildcardAccessURL: s.WildcardAccessURL,
		Version:           version,
		STUNPort:          stunPort,
		DERP:              d.Handler(),
		Site:              site.Handler(),
		HTTPClient:        hc,
		Registered:        reg,
		OnHeartbeat: func(resp tether.ProxyHeartbeatResponse) {
			d.SetMeshPeers(meshPeers(resp.MeshPeers))
		},
	})
	if err != nil {
		return err
	}
	defer p.Close()

	httpServer := httpserve.Start(ln, p.Handler(), tlsConfig, logger)
	logger.Info("workspace proxy started", slog.String("name", reg.Name), slog.String("access_url", accessURL.String()),
		slog.String("primary", primary.String()), slog.Int("derp_region_id", reg.RegionID), slog.String("listen", ln.Addr().String()))
	fmt.Fprintf(stdout, "Workspace proxy %s is listening at %s\n", reg.Name, accessURL)

	runErr := make(chan error, 1)
	rctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() { runErr <- p.Run(rctx) }()

	var result error
	select {
	case <-ctx.Done():
	case err := <-httpServer.Err():
		result = fmt.Errorf("serve HTTP: %w", err)
	case err := <-runErr:
		if err != nil {
			logger.Error("stopping: "+err.Error(), slog.String("name", reg.Name))
			result = err
		}
	}
	logger.Info("shutting down")
	stopRun()
	p.Close()
	httpServer.Shutdown()
	return result
}

// register sends the first heartbeat, retrying while the primary cannot be
// reached, but not once it refuses the token.
func register(ctx context.Context, hc *http.Client, primary *url.URL, token string, req tether.ProxyHeartbeatRequest, logger *slog.Logger) (tether.ProxyHeartbeatResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for {
		resp, err := server.ProxyHeartbeat(ctx, hc, primary, token, req)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, server.ErrProxyRevoked) || ctx.Err() != nil {
			return resp, fmt.Errorf("register with the primary: %w", err)
		}
		logger.Warn("cannot register with the primary yet; retrying", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return resp, fmt.Errorf("register with the primary: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func meshPeers(ps []tether.RelayPeer) []relay.MeshPeer {
	out := make([]relay.MeshPeer, 0, len(ps))
	for _, p := range ps {
		out = append(out, relay.MeshPeer{ID: p.ID, URL: p.URL})
	}
	return out
}
