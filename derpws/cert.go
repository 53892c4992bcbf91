package derpws

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"time"
)

// localCert is the certificate with which the bridge terminates the
// library's TLS for one relay host, and the pin that makes the library
// accept it. It never leaves the process.
type localCert struct {
	cert tls.Certificate
	pin  string // DERPNode.CertName: "sha256-raw:<hex of the DER>"
}

// newLocalCert makes a self-signed certificate for host, which the
// library checks against the name it dials (VerifyHostname) even when the
// certificate is pinned.
func newLocalCert(host string) (*localCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bridge certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("bridge certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Not "derpkey…": the library skips certificates named so.
		Subject:     pkix.Name{CommonName: "tether DERP WebSocket bridge"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("bridge certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &localCert{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pin:  "sha256-raw:" + hex.EncodeToString(sum[:]),
	}, nil
}
