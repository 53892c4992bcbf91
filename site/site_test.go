package site

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, h http.Handler, method, target string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// embeddedAssets lists the built files, so that the tests follow the build
// whatever its hashed names are.
func embeddedAssets(t *testing.T) []string {
	t.Helper()
	var names []string
	err := fs.WalkDir(dist, "dist/assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, "dist"))
		}
		return err
	})
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded assets (%v): run npm run build in site/", err)
	}
	return names
}

func TestIndexForClientRoutes(t *testing.T) {
	h := Handler()
	index, err := fs.ReadFile(dist, "dist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	nonceMeta := regexp.MustCompile(`<meta name="tether-csp-nonce" content="([A-Za-z0-9+/=]{24})" />`)
	styleNonce := regexp.MustCompile(`style-src 'self' 'nonce-([A-Za-z0-9+/=]+)';`)
	seen := map[string]bool{}
	tests := []struct {
		name, target string
	}{
		{"root", "/"},
		{"login", "/login?redirect=%2Fhealth"},
		{"health", "/health"},
		{"templates", "/templates"},
		{"users", "/users"},
		{"account", "/account"},
		{"terminal", "/@alice/dev/terminal"},
		{"terminal with session", "/@alice/dev/terminal?session=0f8e4d1c-7a6b-4c3d-9e2f-1a2b3c4d5e6f"},
		{"unknown page", "/no/such/page"},
		{"favicon at the root", "/favicon.ico"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(t, h, http.MethodGet, tt.target, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d, want 200", w.Code)
			}
			m := nonceMeta.FindSubmatch(w.Body.Bytes())
			if m == nil {
				t.Fatalf("no nonce in the page:\n%s", w.Body)
			}
			nonce := string(m[1])
			if seen[nonce] {
				t.Errorf("nonce %s served twice", nonce)
			}
			seen[nonce] = true
			if got := bytes.ReplaceAll(w.Body.Bytes(), m[1], []byte(nonceToken)); !bytes.Equal(got, index) {
				t.Errorf("body is not index.html:\n%s", w.Body)
			}
			hdr := w.Header()
			if got := hdr.Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if got := hdr.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q, want no-cache", got)
			}
			csp := hdr.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'self'", "script-src 'self';", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if sm := styleNonce.FindStringSubmatch(csp); sm == nil || sm[1] != nonce {
				t.Errorf("CSP %q does not allow styles with the page's nonce %s", csp, nonce)
			}
			// Inline style attributes (xterm's 24-bit colours) are the one
			// unsafe source allowed.
			if strings.Count(csp, "unsafe-") != 1 || !strings.Contains(csp, "style-src-attr 'unsafe-inline';") {
				t.Errorf("CSP %q allows unsafe sources", csp)
			}
			if hdr.Get("ETag") != "" {
				t.Error("the page has an ETag: a revalidated copy would keep an old nonce")
			}
			if hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

// TestIndexReferencesEmbeddedAssets catches a dist/ whose index.html
// points at files that were not committed.
func TestIndexReferencesEmbeddedAssets(t *testing.T) {
	h := Handler()
	index := get(t, h, http.MethodGet, "/", nil).Body.String()
	refs := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllStringSubmatch(index, -1)
	kinds := map[string]bool{}
	for _, m := range refs {
		kinds[path.Ext(m[1])] = true
		if w := get(t, h, http.MethodGet, m[1], nil); w.Code != http.StatusOK {
			t.Errorf("index.html refers to %s, which answers %d", m[1], w.Code)
		}
	}
	for _, ext := range []string{".js", ".css", ".svg"} {
		if !kinds[ext] {
			t.Errorf("index.html refers to no %s file; refs: %v", ext, refs)
		}
	}
}

func TestAssets(t *testing.T) {
	h := Handler()
	wantType := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
		".svg": "image/svg+xml",
		".txt": "text/plain; charset=utf-8",
	}
	for _, name := range embeddedAssets(t) {
		t.Run(name, func(t *testing.T) {
			want, err := fs.ReadFile(dist, "dist"+name)
			if err != nil {
				t.Fatal(err)
			}
			w := get(t, h, http.MethodGet, name, nil)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d", w.Code)
			}
			if !bytes.Equal(w.Body.Bytes(), want) {
				t.Error("body differs from the embedded file")
			}
			ct, ok := wantType[path.Ext(name)]
			if !ok {
				t.Fatalf("the build made a %s file that this test does not know", path.Ext(name))
			}
			if got := w.Header().Get("Content-Type"); got != ct {
				t.Errorf("Content-Type %q, want %q", got, ct)
			}
			if got := w.Header().Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
				t.Errorf("Cache-Control %q for a hashed file", got)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler()
	tests := []struct {
		name, method, target string
		want                 int
	}{
		{"missing asset", http.MethodGet, "/assets/main-AAAAAAAA.js", http.StatusNotFound},
		{"assets directory", http.MethodGet, "/assets/", http.StatusNotFound},
		{"assets without slash", http.MethodGet, "/assets", http.StatusNotFound},
		{"index under assets", http.MethodGet, "/assets/index.html", http.StatusNotFound},
		{"dot-dot under assets", http.MethodGet, "/assets/../index.html", http.StatusNotFound},
		{"api path", http.MethodGet, "/api/v2/nothing", http.StatusNotFound},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed},
		{"delete asset", http.MethodDelete, embeddedAssets(t)[0], http.StatusMethodNotAllowed},
		{"head", http.MethodHead, "/", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(t, h, tt.method, tt.target, nil)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == http.StatusNotFound && strings.Contains(w.Body.String(), "<html") {
				t.Error("a missing file answered with the page")
			}
		})
	}
}

func TestAPIPathAnswersJSON(t *testing.T) {
	w := get(t, Handler(), http.MethodGet, "/api/v2/nothing", nil)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(w.Body.String(), `"message"`) {
		t.Errorf("body %q is not an API error", w.Body)
	}
}

func TestGzipAndConditionalRequests(t *testing.T) {
	h := Handler()
	var big string
	for _, name := range embeddedAssets(t) {
		if strings.HasSuffix(name, ".js") && (big == "" || len(get(t, h, http.MethodGet, name, nil).Body.Bytes()) > len(get(t, h, http.MethodGet, big, nil).Body.Bytes())) {
			big = name
		}
	}
	plain := get(t, h, http.MethodGet, big, nil)
	if plain.Header().Get("Content-Encoding") != "" {
		t.Fatal("compressed for a client that did not ask")
	}

	tests := []struct {
		name, accept string
		gzipped      bool
	}{
		{"gzip", "gzip, deflate, br", true},
		{"any", "*", true},
		{"gzip refused", "gzip;q=0, br", false},
		{"gzip refused with decimals", "gzip; q=0.000", false},
		{"gzip weighted", "br;q=1.0, gzip;q=0.5", true},
		{"identity only", "identity", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := get(t, h, http.MethodGet, big, map[string]string{"Accept-Encoding": tt.accept})
			if got := w.Header().Get("Content-Encoding") == "gzip"; got != tt.gzipped {
				t.Fatalf("gzipped = %v, want %v", got, tt.gzipped)
			}
			if !strings.Contains(w.Header().Get("Vary"), "Accept-Encoding") {
				t.Error("no Vary: Accept-Encoding")
			}
			body := w.Body.Bytes()
			if tt.gzipped {
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, plain.Body.Bytes()) {
				t.Error("decoded body differs")
			}
			etag := w.Header().Get("ETag")
			again := get(t, h, http.MethodGet, big, map[string]string{"Accept-Encoding": tt.accept, "If-None-Match": etag})
			if again.Code != http.StatusNotModified {
				t.Errorf("revalidation with ETag %s: status %d, want 304", etag, again.Code)
			}
		})
	}
	if a, b := plain.Header().Get("ETag"), get(t, h, http.MethodGet, big, map[string]string{"Accept-Encoding": "gzip"}).Header().Get("ETag"); a == b {
		t.Errorf("plain and gzipped bodies share the ETag %s", a)
	}
}

func TestCSPConnectSources(t *testing.T) {
	tests := []struct {
		name, host, want, notWant string
	}{
		{"host and port", "tether.example.com:8443", "connect-src 'self' ws://tether.example.com:8443 wss://tether.example.com:8443;", ""},
		{"ipv6", "[::1]:3000", "ws://[::1]:3000", ""},
		{"hostile host", "a.com; script-src *", "connect-src 'self';", "script-src *"},
		{"empty host", "", "connect-src 'self';", "ws://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := contentSecurityPolicy(tt.host, "bm9uY2U=")
			if !strings.Contains(got, tt.want) {
				t.Errorf("policy %q lacks %q", got, tt.want)
			}
			if tt.notWant != "" && strings.Contains(got, tt.notWant) {
				t.Errorf("policy %q contains %q", got, tt.notWant)
			}
		})
	}
}

func TestUnhashedAssetsRevalidate(t *testing.T) {
	h, err := newHandler(fstest.MapFS{
		"index.html":             {Data: []byte("<!doctype html>")},
		"assets/app-ABCDEFGH.js": {Data: []byte("1")},
		"assets/notes.txt":       {Data: []byte("2")},
		"assets/blob.bin":        {Data: []byte("3")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target, cache, ctype string
	}{
		{"/assets/app-ABCDEFGH.js", "public, max-age=31536000, immutable", "text/javascript; charset=utf-8"},
		{"/assets/notes.txt", "no-cache", "text/plain; charset=utf-8"},
		{"/assets/blob.bin", "no-cache", "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			w := get(t, h, http.MethodGet, tt.target, nil)
			if got := w.Header().Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control %q, want %q", got, tt.cache)
			}
			if got := w.Header().Get("Content-Type"); got != tt.ctype {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
		})
	}
}

func TestMissingIndex(t *testing.T) {
	if _, err := newHandler(fstest.MapFS{"assets/a.js": {Data: []byte("1")}}); err == nil {
		t.Fatal("a dist without index.html was accepted")
	}
}
