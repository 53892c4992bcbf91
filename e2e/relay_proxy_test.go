package e2e

// The server behind nginx, as operators deploy it: everything (login,
// coordination, relay, ssh) goes through the proxy. A proxy set up for
// WebSocket alone refuses DERP's own upgrade ("Upgrade: DERP"); peers must
// then reach the relay over WebSocket, by themselves or because the server
// says so (--derp-force-websockets).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether/internal/harness"
)

func TestRelayBehindNginx(t *testing.T) {
	requireNginx(t)
	tests := []struct {
		name       string
		refuseDERP bool // nginx forwards only "Upgrade: websocket"
		https      bool // nginx terminates TLS
		force      bool // --derp-force-websockets
		// What nginx must have seen on /derp, as "upgrade=X status=N":
		// at least one of each of want, none of never.
		want, never []string
		agentSays   string // in the agent's log
	}{
		{
			name: "usual WebSocket config passes DERP's upgrade",
			want: []string{"upgrade=DERP status=101"}, never: []string{"upgrade=websocket status=101"},
		},
		{
			name: "proxy refusing DERP's upgrade: WebSocket fallback", refuseDERP: true,
			want:      []string{"upgrade=DERP status=426", "upgrade=websocket status=101"},
			never:     []string{"upgrade=DERP status=101"},
			agentSays: "refuses its upgrade but accepts WebSocket",
		},
		{
			name: "refusing proxy over HTTPS: WebSocket fallback", refuseDERP: true, https: true,
			want:      []string{"upgrade=DERP status=426", "upgrade=websocket status=101"},
			never:     []string{"upgrade=DERP status=101"},
			agentSays: "refuses its upgrade but accepts WebSocket",
		},
		{
			name: "forced WebSocket never tries DERP's upgrade", refuseDERP: true, force: true,
			want:      []string{"upgrade=websocket status=101"},
			never:     []string{"upgrade=DERP status=426", "upgrade=DERP status=101"},
			agentSays: "over WebSocket, as the server requires",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
			port := freePort(t, "tcp")
			scheme, o := "http", nginxOptions{refuseDERP: tt.refuseDERP}
			var env []string
			if tt.https {
				scheme = "https"
				o.certFile, o.keyFile = selfSignedCert(t)
				// Go's TLS (the CLI's API client and the relay client)
				// trusts what SSL_CERT_FILE names.
				env = append(env, "SSL_CERT_FILE="+o.certFile)
			}
			args := []string{"--access-url", scheme + "://127.0.0.1:" + strconv.Itoa(port)}
			if tt.force {
				args = append(args, "--derp-force-websockets")
			}
			srv := here.StartServerWith(t, harness.ServerOptions{Addr: backend, Args: args})
			ngx := startNginx(t, port, backend, o)

			u := here.NewUser(t)
			u.Env = append(u.Env, env...)
			u.Must("login", srv.URL, "--first-user-username", "alice", "--first-user-email", "alice@example.com", "--first-user-password", "correct-horse")
			token, agentURL := u.CreateWorkspace("dev")
			if !strings.HasPrefix(agentURL, srv.URL) {
				t.Fatalf("agent URL %s does not go through nginx at %s", agentURL, srv.URL)
			}
			agent := here.Start(t, "agent", append(env, "TETHER_AGENT_TOKEN="+token), "agent", "--url", agentURL)
			harness.WaitFor(t, harness.StatusTimeout, "agent connected", func() bool { return u.AgentStatus("dev") == "connected" })

			elapsed, _ := pingUntil(t, u, func(l pingLine) bool { return l.Path != "timeout" }, "--disable-direct", "--interval", "50ms")
			t.Logf("first relayed pong %v after the CLI started", elapsed.Round(time.Millisecond))
			for _, l := range pings(t, u, "-n", "3", "--interval", "50ms", "--disable-direct") {
				if l.Path != "derp" || l.DERPRegion != "tether" {
					t.Errorf("pong %+v, want relayed by tether", l)
				}
			}
			if out := u.Must("ssh", "dev", "--disable-direct", "--", "head -c 300000 /dev/zero | wc -c"); strings.TrimSpace(out) != "300000" {
				t.Errorf("ssh through nginx printed %q", out)
			}
			if tt.agentSays != "" && !strings.Contains(agent.Output(), tt.agentSays) {
				t.Errorf("the agent's log does not say %q", tt.agentSays)
			}

			// nginx logs an upgraded request when it ends: stop the agent.
			// Login and coordination went through nginx too (the CLI
			// names the workspace's owner as the user typed it: "dev" is
			// me/dev).
			agent.Kill()
			want := map[string][]string{
				"/derp":                                tt.want,
				"/api/v2/users/first":                  {"upgrade=- status=201"},
				"/api/v2/agent/connect":                {"upgrade=websocket status=101"},
				"/api/v2/workspaces/me/dev/coordinate": {"upgrade=websocket status=101"},
			}
			harness.WaitFor(t, harness.StatusTimeout, "nginx to log every connection", func() bool {
				for path, lines := range want {
					seen := ngx.requests(t, path)
					for _, w := range lines {
						if count(seen, w) == 0 {
							return false
						}
					}
				}
				return true
			})
			seen := ngx.requests(t, "/derp")
			for _, n := range tt.never {
				if c := count(seen, n); c != 0 {
					t.Errorf("nginx saw %q %d times on /derp; all: %v", n, c, seen)
				}
			}
			t.Logf("nginx saw on /derp: %v", seen)
		})
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key, and
// returns their paths.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "tether test proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}
