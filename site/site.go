// Package site is Tether's browser dashboard: sign-in, the workspace list
// with live agent status, apps and connection paths, deployment health, the
// web terminal (xterm.js), and the pages that manage workspaces, templates,
// users and one's own account and API tokens. It is a small TypeScript single-page app
// (Preact, esbuild) whose built files are committed under dist/ and
// embedded here, so `go build` alone yields a working dashboard and npm is
// needed only to change it.
//
// The server mounts Handler for the dashboard's paths. Files under
// /assets/ are served as built; the pages listed in src/routes.json
// (/login, /, /health, /templates, /users, /account,
// /@OWNER/WORKSPACE/terminal; see routes.go) get
// index.html, and the app picks the page from the path. The server
// answers 404 for any other path (IsPage), so that the handler itself
// still serves index.html for whatever it is given.
//
// # Changing the front end
//
// The sources are in src/. After changing them:
//
//	cd site && npm ci && npm run build     # rewrites dist/; commit it with the sources
//
// The build is reproducible, and TestDistUpToDate (run with
// TETHER_SITE_CHECK=1 and npm on PATH) rebuilds it in a temporary copy and
// fails if dist/ differs from what the sources produce.
//
// For quick iteration, `npm run dev` serves the sources, rebuilt on every
// save, at http://127.0.0.1:5173 and proxies /api (WebSockets included) to
// a running `tether server` (TETHER_URL, default http://127.0.0.1:3000).
//
// # The API's types
//
// src/tether.gen.ts declares the API's wire types, generated from the Go
// package tether (internal/tsgen): the dashboard never declares one by
// hand. After changing them in Go, run `go generate ./site` and rebuild;
// TestTypesUpToDate fails while the file is stale.
package site

//go:generate go run ../internal/tsgen/cmd/tsgen -o src/tether.gen.ts ..

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// dist holds the built dashboard. It is read-only.
//
//go:embed dist
var dist embed.FS

// Handler serves the dashboard from the files embedded at build time. It
// compresses the assets once, when called: call it once and mount the one
// handler on every path that it serves.
func Handler() http.Handler { return HandlerWith(nil) }

// HandlerWith is Handler whose pages may also connect to the origins that
// connect returns when each page is served (the workspace proxies, whose
// latency the dashboard measures); nil adds none.
func HandlerWith(connect func() []string) http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return brokenHandler(err)
	}
	h, err := newHandler(sub)
	if err != nil {
		return brokenHandler(err)
	}
	h.connect = connect
	return h
}

// brokenHandler reports a dashboard that was built wrongly; the package's
// tests make sure the embedded one is not.
func brokenHandler(err error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the dashboard is missing from this build: "+err.Error(), http.StatusInternalServerError)
	})
}

// hashedName matches the content-hashed file names that the build gives
// everything under assets/ (esbuild's [hash]: 8 base32 characters). Such a
// file never changes, so browsers may keep it for good.
var hashedName = regexp.MustCompile(`-[A-Z2-7]{8}\.[a-z0-9]+$`)

// contentType is fixed here rather than taken from the mime package,
// which consults the host's /etc/mime.types and could serve JavaScript
// with a type that strict MIME checking rejects.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".png":
		return "image/png"
	case ".svg":
		return "image/svg+xml"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".woff2":
		return "font/woff2"
	}
	return "application/octet-stream"
}

// minGzip is the size below which compressing is not worth a round of
// headers.
const minGzip = 1024

type file struct {
	body        []byte
	gz          []byte // nil when not worth compressing
	contentType string
	etag        string
	immutable   bool
}

type handler struct {
	connect func() []string // further origins pages may connect to; may be nil
	index   *file
	assets  map[string]*file // by URL path, "/assets/NAME"
}

func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{assets: map[string]*file{}}
	b, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	h.index = newFile("index.html", b)
	err = fs.WalkDir(fsys, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f := newFile(p, b)
		f.immutable = hashedName.MatchString(p)
		h.assets["/"+p] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read assets: %w", err)
	}
	return h, nil
}

func newFile(name string, body []byte) *file {
	sum := sha256.Sum256(body)
	ct := contentType(name)
	f := &file{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	if len(body) >= minGzip && compressible(ct) {
		// Writes to a bytes.Buffer cannot fail, nor can a known level.
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if buf.Len() < len(body)*9/10 {
			f.gz = buf.Bytes()
		}
	}
	return f
}

func compressible(contentType string) bool {
	return strings.HasPrefix(contentType, "text/") ||
		strings.HasPrefix(contentType, "application/json") ||
		strings.HasPrefix(contentType, "image/svg+xml")
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/"):
		// Only reached if the server mounts the dashboard over its API by
		// mistake: answer API clients in the API's own error shape.
		hdr.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "{\"message\": %q}\n", "no API endpoint "+r.Method+" "+p)
	case p == "/assets" || strings.HasPrefix(p, "/assets/"):
		f, ok := h.assets[p]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if f.immutable {
			hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			hdr.Set("Cache-Control", "no-cache")
		}
		serveFile(w, r, f)
	default:
		h.serveIndex(w, r)
	}
}

// nonceToken is the placeholder in index.html that each response replaces
// with the nonce of its Content-Security-Policy.
const nonceToken = "__TETHER_CSP_NONCE__"

// serveIndex serves the page of the app, which every path other than an
// asset is. It carries no ETag: each response has its own nonce, and a
// page revalidated from cache would keep an old one. Browsers must fetch
// it again each time, so that a new build's asset names are seen at once.
func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	var b [18]byte
	rand.Read(b[:])
	nonce := base64.StdEncoding.EncodeToString(b[:])
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache")
	var extra []string
	if h.connect != nil {
		extra = h.connect()
	}
	hdr.Set("Content-Security-Policy", contentSecurityPolicy(r.Host, nonce, extra...))
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Type", h.index.contentType)
	body := bytes.ReplaceAll(h.index.body, []byte(nonceToken), []byte(nonce))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func serveFile(w http.ResponseWriter, r *http.Request, f *file) {
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	body := f.body
	etag := f.etag
	if f.gz != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			hdr.Set("Content-Encoding", "gzip")
			body = f.gz
			etag = strings.TrimSuffix(f.etag, `"`) + `-gz"`
		}
	}
	hdr.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reads an Accept-Encoding header (RFC 9110 section 12.5.3):
// gzip, or *, listed without q=0.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "x-gzip" && name != "*" {
			continue
		}
		for _, param := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}

// validHost is what may be copied from the Host header into the policy.
var validHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// contentSecurityPolicy allows the page only its own scripts, styles,
// images and connections: no inline script, no eval, no third-party
// origins, no framing.
//
// Styles are the one compromise, for xterm.js's DOM renderer: it injects
// <style> elements, which the page stamps with this response's nonce (see
// src/csp.ts), and it sets style attributes for 24-bit colours, which
// style-src-attr allows; inline style attributes cannot run code or read
// the page. The terminal's WebSocket is same-origin; 'self' covers ws: and
// wss: in current browsers, and the explicit origins cover older ones.
//
// extra are further origins ("https://proxy.example.com") the page may
// connect to: the workspace proxies, whose latency the dashboard measures.
// Any that is not exactly a scheme and a host is left out.
func contentSecurityPolicy(host, nonce string, extra ...string) string {
	connect := "'self'"
	if validHost.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	for _, o := range extra {
		scheme, h, ok := strings.Cut(o, "://")
		if ok && (scheme == "http" || scheme == "https") && validHost.MatchString(h) {
			connect += " " + o
		}
	}
	return "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-" + nonce + "'; style-src-attr 'unsafe-inline'; " +
		"img-src 'self'; font-src 'self'; connect-src " + connect + "; " +
		"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}
