package httpserve

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAccessURL(t *testing.T) {
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	tests := []struct {
		name    string
		raw     string
		addr    net.Addr
		tls     bool
		want    string
		wantErr string
	}{
		{name: "from the listener", addr: tcp("127.0.0.1:3000"), want: "http://127.0.0.1:3000"},
		{name: "TLS", addr: tcp("10.0.0.1:443"), tls: true, want: "https://10.0.0.1:443"},
		{name: "every address means loopback", addr: tcp("0.0.0.0:3000"), want: "http://127.0.0.1:3000"},
		{name: "every IPv6 address means loopback", addr: tcp("[::]:3000"), want: "http://127.0.0.1:3000"},
		{name: "given, path dropped", raw: "https://tether.example.com/some/path", addr: tcp("0.0.0.0:443"), want: "https://tether.example.com"},
		{name: "given, query and fragment dropped", raw: "https://tether.example.com:8443/?next=/x#y", want: "https://tether.example.com:8443"},
		{name: "not http", raw: "ftp://tether.example.com", wantErr: "--access-url"},
		{name: "no host", raw: "https://", wantErr: "--access-url"},
		{name: "no scheme", raw: "tether.example.com", wantErr: "--access-url"},
		{name: "credentials refused, and not echoed", raw: "https://admin:hunter2@tether.example.com", wantErr: "must not hold a user name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AccessURL(tt.raw, tt.addr, tt.tls)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("error %q echoes the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	tests := []struct {
		name      string
		cert, key string
		wantNil   bool
		wantErr   string
	}{
		{name: "neither: plain HTTP", wantNil: true},
		{name: "both", cert: cert, key: key},
		{name: "cert alone", cert: cert, wantErr: "go together"},
		{name: "key alone", key: key, wantErr: "go together"},
		{name: "missing file", cert: filepath.Join(dir, "nope.pem"), key: key, wantErr: "load TLS certificate"},
		{name: "key of the wrong kind", cert: cert, key: cert, wantErr: "load TLS certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := TLSConfig(tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg == nil) != tt.wantNil {
				t.Fatalf("config %v, want nil: %v", cfg, tt.wantNil)
			}
			if cfg != nil && cfg.MinVersion < tls.VersionTLS12 {
				t.Errorf("MinVersion %x allows TLS below 1.2", cfg.MinVersion)
			}
		})
	}
}

// TestServeAndShutdown: a request is answered over TLS with HTTP/1.1 (the
// hijacking handlers need it), and after Shutdown the listener is closed.
func TestServeAndShutdown(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir)
	cfg, err := TLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})
	s := Start(ln, h, cfg, slog.New(slog.DiscardHandler))

	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/1.1" {
		t.Errorf("served over %q, want HTTP/1.1", body)
	}

	s.Shutdown()
	select {
	case err := <-s.Err():
		if err != http.ErrServerClosed {
			t.Errorf("Err() = %v, want http.ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serving did not end after Shutdown")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Error("the listener still accepts after Shutdown")
	}
}

// writeCert writes a throwaway self-signed certificate and its key.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
