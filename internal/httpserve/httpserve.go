// Package httpserve is what the server and a workspace proxy share in
// serving HTTP: the TLS flags, the access URL derived from the listener,
// and an http.Server fit for handlers that hijack their connections (the
// DERP relay, WebSockets) with a bounded shutdown.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// TLSConfig loads --tls-cert-file and --tls-key-file. Neither gives nil:
// plain HTTP.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--tls-cert-file and --tls-key-file go together: pass both or neither")
	}
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// AccessURL checks --access-url and keeps only its scheme and host, or,
// when it is empty, derives one from the listener (loopback for a
// listener on every address).
func AccessURL(raw string, addr net.Addr, useTLS bool) (*url.URL, error) {
	if raw == "" {
		scheme := "http"
		if useTLS {
			scheme = "https"
		}
		host := addr.String()
		if tcp, ok := addr.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
			host = net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
		}
		return &url.URL{Scheme: scheme, Host: host}, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--access-url %q must be an http:// or https:// URL with a host", raw)
	}
	if u.User != nil {
		// Every link the server prints would carry the credentials.
		return nil, fmt.Errorf("--access-url %q must not hold a user name or password", u.Redacted())
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// Server serves one handler on one listener until Shutdown.
type Server struct {
	hs   *http.Server
	errc chan error
}

// Start serves h on ln, over TLS when tlsConfig is not nil. Errors of the
// HTTP server itself go to logger at debug level (clients that hang up
// mid-handshake are not the operator's concern).
func Start(ln net.Listener, h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *Server {
	s := &Server{
		hs: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
			// DERP and WebSockets hijack HTTP/1.1 connections: no HTTP/2.
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
			TLSConfig:    tlsConfig,
		},
		errc: make(chan error, 1),
	}
	go func() {
		if tlsConfig != nil {
			s.errc <- s.hs.ServeTLS(ln, "", "")
		} else {
			s.errc <- s.hs.Serve(ln)
		}
	}()
	return s
}

// Err delivers the error that stopped serving before Shutdown.
func (s *Server) Err() <-chan error { return s.errc }

// Shutdown stops accepting, lets requests in flight finish for up to 5 s,
// then closes what is left. Hijacked connections are not its to end: the
// handler that took them must close them first.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		s.hs.Close()
	}
}

// Close stops serving at once.
func (s *Server) Close() { s.hs.Close() }
