package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/internal/harness"
)

// TestServerServesTLS: `tether server --tls-cert-file/--tls-key-file`
// serves everything over HTTPS itself (no proxy in front): the CLI signs
// in, the agent connects, ssh works direct and through the relay (DERP
// over TLS), the dashboard's cookie is the host-only secure form, and a
// CLI that does not trust the certificate says so in a line.
func TestServerServesTLS(t *testing.T) {
	certFile, keyFile := selfSignedCert(t)
	srv := here.StartServer(t, "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("a server with a certificate printed access URL %s, want https://", srv.URL)
	}
	trust := "SSL_CERT_FILE=" + certFile
	d := harness.StartDeployment(t, srv, harness.DeploymentOptions{CLIEnv: []string{trust}, AgentEnv: []string{trust}})

	if out := d.User.Must("ssh", "dev", "--", "echo over-tls"); strings.TrimSpace(out) != "over-tls" {
		t.Errorf("ssh printed %q", out)
	}
	if out := d.User.Must("ssh", "dev", "--disable-direct", "--", "head -c 200000 /dev/zero | wc -c"); strings.TrimSpace(out) != "200000" {
		t.Errorf("ssh through the relay over TLS printed %q", out)
	}

	// A browser's sign-in gets the __Host- cookie, Secure.
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/v2/users/login",
		strings.NewReader(`{"login":"`+harness.AdminName+`","password":"`+harness.AdminPassword+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", srv.URL)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tether.SessionCookieSecure {
			session = c
		}
		if c.Name == tether.SessionCookie {
			t.Errorf("over https the server set the plain %s cookie", c.Name)
		}
	}
	if resp.StatusCode != http.StatusOK || session == nil {
		t.Fatalf("login over https: %d, cookies %v; want 200 and %s", resp.StatusCode, resp.Cookies(), tether.SessionCookieSecure)
	}
	if !session.Secure || session.Domain != "" || session.Path != "/" {
		t.Errorf("session cookie %+v: want Secure, host-only, Path=/", session)
	}

	// Plain HTTP on the TLS port is refused, not served.
	plain := strings.Replace(srv.URL, "https://", "http://", 1)
	if code, body := api(t, "GET", plain+"/api/v2/buildinfo", "", nil); code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port: %d %s, want 400", code, body)
	}

	// A CLI that does not trust the certificate fails in one clear line.
	stderr := here.NewUser(t).Fails("login", srv.URL, "--username", harness.AdminName, "--password", harness.AdminPassword)
	if !strings.Contains(stderr, "does not trust the certificate") || !strings.Contains(stderr, "SSL_CERT_FILE") || strings.Contains(stderr, "goroutine") || strings.Count(strings.TrimSpace(stderr), "\n") > 2 {
		t.Errorf("login without trusting the certificate: %q; want a short error naming the certificate", stderr)
	}
}
