// Package servercmd is the `tether server` command: it declares the
// server's settings, checks them, opens the store, listens, builds the
// infrastructure the API server runs on (the coordinator, the built-in
// relay, the replicas; see infra.go) and hands it in, and in --dev mode
// sets up a complete demo deployment. It is wiring: what it wires lives in
// packages of its own (server, coordinator, relay, replica, store). It is
// apart from package cli so that the client commands never link the
// server or its store.
package servercmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tetherdev/tether/cli/option"
	"github.com/tetherdev/tether/internal/httpserve"
	"github.com/tetherdev/tether/internal/logging"
	"github.com/tetherdev/tether/peerrelay"
	"github.com/tetherdev/tether/server"
	"github.com/tetherdev/tether/site"
	"github.com/tetherdev/tether/store/storemetrics"
)

// Settings are the flags of `tether server`, each also read from its
// TETHER_ environment variable.
type Settings struct {
	AccessURL   string
	HTTPAddress string
	DataDir     string
	PostgresURL string
	// DERPServerRelayURL is where other replicas reach this one's relay.
	DERPServerRelayURL string
	TLSCertFile        string
	TLSKeyFile         string
	LogLevel           string
	LogFormat          string
	Dev                bool
	ConfigDir          string // where --dev writes CLI credentials

	DERPServerEnable        bool
	DERPServerRegionID      int
	DERPServerRegionCode    string
	DERPServerRegionName    string
	DERPServerSTUNAddresses []string
	STUNAddresses           []string
	DERPConfigPath          string
	DERPConfigURL           string
	DERPForceWebSockets     bool
	BlockDirectConnections  bool
	UDPRelayAddress         string
	UDPRelayPublicAddresses []string
	BrowserOnly             bool
	BrowserDirect           bool
	WildcardAccessURL       string
	AllowPathAppSharing     bool
	TrustedProxies          []string
	MaxWorkspacesPerUser    int
	AgentBinariesDir        string
	MaxTokenLifetime        time.Duration

	// PrometheusAddress and PprofAddress are where operators reach the
	// metrics and the profiler; empty for none.
	PrometheusAddress string
	PprofAddress      string
}

// Command returns `tether server`. version is reported by the API.
func Command(stdout, stderr io.Writer, version string) *cobra.Command {
	var s Settings
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Tether control plane (API, dashboard, coordinator, DERP relay)",
		Long: "Run the Tether server. Users and agents reach it at its access URL.\n\n" +
			"Try it on one machine with `tether server --dev`: it creates an admin, a workspace `dev`\n" +
			"whose agent runs here, and CLI credentials, so that `tether ssh dev` works at once.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cf := cmd.Flag("config-dir"); cf != nil {
				s.ConfigDir = cf.Value.String()
			}
			// The libraries' global log goes to the server's logger
			// too, for the life of the process (Run alone, as tests
			// call it, leaves the global logger alone).
			logger, err := logging.New(stderr, s.LogLevel, s.LogFormat)
			if err != nil {
				return err
			}
			defer logging.CaptureStdLog(logger)()
			return run(cmd.Context(), s, logger, stdout, version)
		},
	}
	s.bindFlags(cmd.Flags())
	option.Deployment(cmd)
	return cmd
}

// bindFlags declares the flags that set s, with their defaults.
func (s *Settings) bindFlags(f *pflag.FlagSet) {
	f.StringVar(&s.AccessURL, "access-url", "", "external URL where users and agents reach this server (default: http:// + --http-address)")
	f.StringVar(&s.HTTPAddress, "http-address", "127.0.0.1:3000", "address to listen on for HTTP(S)")
	f.StringVar(&s.DataDir, "data-dir", "", "directory for the embedded database (default: ~/.local/share/tether, or ./.tether-dev with --dev)")
	f.StringVar(&s.PostgresURL, "postgres-url", "", "PostgreSQL database to keep state in (postgres://USER:PASSWORD@HOST/DB), instead of the embedded one in --data-dir")
	f.StringVar(&s.DERPServerRelayURL, "derp-server-relay-url", "", "with --postgres-url: URL where the other replicas reach this replica's relay (default: http:// + --http-address when that names a host)")
	f.StringVar(&s.TLSCertFile, "tls-cert-file", "", "PEM certificate to serve HTTPS with (with --tls-key-file)")
	f.StringVar(&s.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	f.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&s.LogFormat, "log-format", "text", "text, or json for one JSON object a line")
	f.StringVar(&s.PrometheusAddress, "prometheus-address", "", "serve Prometheus metrics at /metrics on this address, such as 127.0.0.1:2112 (off by default; a non-loopback address is logged as a warning)")
	f.StringVar(&s.PprofAddress, "pprof-address", "", "serve Go's profiler at /debug/pprof/ on this loopback address, such as 127.0.0.1:6060 (off by default)")
	f.BoolVar(&s.DERPServerEnable, "derp-server-enable", true, "run the built-in DERP relay at /derp")
	f.IntVar(&s.DERPServerRegionID, "derp-server-region-id", 999, "region ID of the built-in relay in the DERP map")
	f.StringVar(&s.DERPServerRegionCode, "derp-server-region-code", "tether", "region code of the built-in relay")
	f.StringVar(&s.DERPServerRegionName, "derp-server-region-name", "Tether", "region name of the built-in relay")
	f.StringSliceVar(&s.DERPServerSTUNAddresses, "derp-server-stun-addresses", []string{"0.0.0.0:3478"}, "UDP addresses for the built-in STUN server (comma separated), or disable")
	f.StringSliceVar(&s.STUNAddresses, "stun-addresses", nil, "STUN servers (host:port, comma separated) peers use to find their public address; default: the built-in one; disable for none")
	f.StringVar(&s.DERPConfigPath, "derp-config-path", "", "file with a DERP map (Tailscale JSON format) of relays to add")
	f.StringVar(&s.DERPConfigURL, "derp-config-url", "", "URL of a DERP map (Tailscale JSON format) of relays to add")
	f.BoolVar(&s.DERPForceWebSockets, "derp-force-websockets", false, "peers reach relays over WebSocket only (for proxies that pass nothing else)")
	f.StringVar(&s.UDPRelayAddress, "udp-relay-address", fmt.Sprintf("0.0.0.0:%d", peerrelay.DefaultPort), "UDP port of the built-in UDP relay, which carries peers' (encrypted) traffic when they cannot connect directly but can reach this server over UDP; HOST:PORT binds PORT on every interface and gives peers HOST (0.0.0.0: every interface's address); disable to turn it off")
	f.StringSliceVar(&s.UDPRelayPublicAddresses, "udp-relay-public-addresses", nil, "IP:PORT addresses (comma separated) where peers reach the UDP relay, when its public address is not on an interface (cloud VMs, load balancers, port forwarding)")
	f.BoolVar(&s.BlockDirectConnections, "block-direct-connections", false, "relay all traffic: peers publish no direct endpoints")
	f.BoolVar(&s.BrowserOnly, "browser-only", false, "refuse CLI tunnels (ssh, port-forward, ping, speedtest); the web terminal and apps keep working, relayed by the server")
	f.BoolVar(&s.BrowserDirect, "browser-direct", true, "let web terminals go direct, browser to workspace over WebRTC, with the deployment's STUN servers (off with --browser-only or --block-direct-connections)")
	f.StringVar(&s.WildcardAccessURL, "wildcard-access-url", "", "serve subdomain apps at APP--WS--USER.<domain>: a pattern like *.apps.example.com whose hosts resolve to this server")
	f.BoolVar(&s.AllowPathAppSharing, "dangerous-allow-path-app-sharing", false, "let path-based apps open for users other than their owner (admins included); their scripts run on the dashboard's origin and could act as the visitor")
	f.StringSliceVar(&s.TrustedProxies, "trusted-proxies", nil, "addresses or CIDR ranges (comma separated) of reverse proxies in front of this server whose X-Forwarded-For names the client, for sign-in throttling and logs; others' X-Forwarded-For is ignored")
	f.IntVar(&s.MaxWorkspacesPerUser, "max-workspaces-per-user", 100, "how many workspaces each user (admins too) may own; 0 for no limit")
	f.StringVar(&s.AgentBinariesDir, "agent-binaries-dir", "", "directory of agent binaries for other platforms, served at /bin/tether-OS-ARCH beside the server's own ('go run ./internal/release -o DIR' builds them)")
	f.DurationVar(&s.MaxTokenLifetime, "max-token-lifetime", server.DefaultMaxTokenLifetime, "the longest lifetime an API token may be given (tether tokens create --lifetime); 8760h is a year")
	f.BoolVar(&s.Dev, "dev", false, "demo mode: local data, a first admin, a workspace 'dev' with its agent on this machine, and CLI credentials")
}

func defaultDataDir(dev bool) string {
	if dev {
		return ".tether-dev"
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "tether")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "tether")
	}
	return ".tether"
}

// Run runs the server until ctx ends.
func Run(ctx context.Context, s Settings, stdout, stderr io.Writer, version string) error {
	logger, err := logging.New(stderr, s.LogLevel, s.LogFormat)
	if err != nil {
		return err
	}
	return run(ctx, s, logger, stdout, version)
}

// run is Run with the logger made.
func run(ctx context.Context, s Settings, logger *slog.Logger, stdout io.Writer, version string) error {
	if s.MaxWorkspacesPerUser < 0 {
		return fmt.Errorf("--max-workspaces-per-user %d: give 0 for no limit, or how many workspaces each user may own", s.MaxWorkspacesPerUser)
	}
	if s.MaxTokenLifetime < time.Minute {
		return fmt.Errorf("--max-token-lifetime %s: give the longest lifetime an API token may have, such as 720h (30 days)", s.MaxTokenLifetime)
	}
	tlsConfig, err := httpserve.TLSConfig(s.TLSCertFile, s.TLSKeyFile)
	if err != nil {
		return err
	}
	trustedProxies, err := parsePrefixes(s.TrustedProxies)
	if err != nil {
		return err
	}
	if err := checkBinariesDir(s.AgentBinariesDir); err != nil {
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

	if err := checkRelaySettings(s); err != nil {
		return err
	}
	udpRelay, err := parseUDPRelaySettings(s)
	if err != nil {
		return err
	}
	ops, err := startOps(s, version, logger)
	if err != nil {
		return err
	}
	defer ops.close()
	// Where other replicas reach our relay, checked before anything is
	// opened.
	var relayURL string
	if s.PostgresURL != "" && s.DERPServerEnable {
		if relayURL, err = relayURLFor(s, ln.Addr(), tlsConfig != nil, logger); err != nil {
			return err
		}
	}

	if s.DataDir == "" {
		s.DataDir = defaultDataDir(s.Dev)
	}
	if s.Dev || s.PostgresURL == "" {
		// The embedded store lives in the data directory, and --dev keeps
		// its admin's password there whatever the store: one server at a
		// time.
		if err := os.MkdirAll(s.DataDir, 0o700); err != nil {
			return fmt.Errorf("create --data-dir: %w", err)
		}
		unlock, err := lockDataDir(s.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	db, storeDesc, err := openStore(ctx, s)
	if err != nil {
		return err
	}
	defer db.Close()
	if ops.registry != nil {
		db = storemetrics.New(db, ops.registry)
	}

	inf, err := startInfra(ctx, s, udpRelay, accessURL, relayURL, db, logger)
	if err != nil {
		return err
	}
	// Deferred before the API server's Close, so it runs after it.
	defer inf.close()
	ops.register(inf)

	var srv *server.Server
	opts := server.Options{
		Logger:               logger.With(slog.String("component", "server")),
		Store:                db,
		AccessURL:            accessURL,
		Version:              version,
		Coordinator:          inf.coord,
		DERPMap:              inf.derpMap,
		BlockDirect:          s.BlockDirectConnections,
		DERPForceWebSockets:  s.DERPForceWebSockets,
		BrowserOnly:          s.BrowserOnly,
		BrowserDirect:        s.BrowserDirect,
		WildcardAccessURL:    s.WildcardAccessURL,
		AllowPathAppSharing:  s.AllowPathAppSharing,
		TrustedProxies:       trustedProxies,
		MaxWorkspacesPerUser: s.MaxWorkspacesPerUser,
		MaxTokenLifetime:     s.MaxTokenLifetime,
		AgentBinary:          ownBinary(logger),
		AgentBinariesDir:     s.AgentBinariesDir,
		// The dashboard measures its latency to the proxies.
		Site: site.HandlerWith(func() []string {
			if srv == nil {
				return nil
			}
			return srv.ProxyOrigins()
		}),
		SitePage: site.IsPage,
	}
	if ops.registry != nil {
		opts.Metrics = ops.registry
	}
	if inf.derp != nil {
		opts.DERP = inf.derp.Handler()
		opts.DERPRegionID = s.DERPServerRegionID
		opts.DERPMeshKey = inf.derp.MeshKey()
		opts.OnProxyRelays = inf.mesh.setProxies
	}
	if inf.cluster != nil {
		opts.Replicas, opts.SelfRelayURL = inf.cluster.healthPeers, relayURL
	}
	if inf.udp != nil {
		opts.UDPRelayCheck = inf.udp.Check
	}
	srv, err = server.New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()

	httpServer := httpserve.Start(ln, srv.Handler(), tlsConfig, logger)
	logger.Info("server started", slog.String("access_url", accessURL.String()),
		slog.String("listen", ln.Addr().String()), slog.String("store", storeDesc))

	if s.Dev {
		do := devOptions{
			accessURL: accessURL, dataDir: s.DataDir, configDir: s.ConfigDir,
			store: db, logger: logger, stdout: stdout, version: version,
		}
		if ops.registry != nil {
			do.metrics = ops.registry
		}
		stopDev, err := startDev(ctx, do)
		if err != nil {
			httpServer.Close()
			return fmt.Errorf("dev mode: %w", err)
		}
		defer stopDev()
	} else {
		fmt.Fprintf(stdout, "Tether is listening at %s\n", accessURL)
	}

	select {
	case <-ctx.Done():
	case err := <-httpServer.Err():
		return fmt.Errorf("serve HTTP: %w", err)
	}
	logger.Info("shutting down")
	srv.Close() // ends WebSockets, which Shutdown does not wait for
	httpServer.Shutdown()
	return nil
}

// checkBinariesDir checks --agent-binaries-dir before anything starts.
func checkBinariesDir(dir string) error {
	if dir == "" {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--agent-binaries-dir: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--agent-binaries-dir %s is not a directory", dir)
	}
	return nil
}

// ownBinary is the path of the running binary, which the server serves as
// the agent for its own platform; "" (serving none) when it cannot tell.
func ownBinary(logger *slog.Logger) string {
	exe, err := os.Executable()
	if err != nil {
		logger.Warn("cannot find this server's own binary, so it serves none as the agent for its platform", slog.Any("err", err))
		return ""
	}
	return exe
}

// parsePrefixes reads --trusted-proxies: addresses or CIDR ranges.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range list {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is neither an IP address nor a CIDR range such as 10.0.0.0/8", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}
