package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetherdev/tether"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://tether.example.com/", "https://tether.example.com"},
		{"tether.example.com", "https://tether.example.com"},
		{"http://127.0.0.1:3000", "http://127.0.0.1:3000"},
	}
	for _, tc := range tests {
		u, err := ParseURL(tc.in)
		if err != nil || u.String() != tc.want {
			t.Errorf("ParseURL(%q) = %v, %v", tc.in, u, err)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://"} {
		if _, err := ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v2/users/me":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"message":"session expired","code":"unauthorized"}`))
		default: // a proxy's error page, not the API's
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>502 Bad Gateway</html>"))
		}
	}))
	defer ts.Close()
	c, _ := New(ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := c.Me(ctx)
	if tether.ErrorCode(err) != tether.EUNAUTHORIZED || tether.ErrorMessage(err) != "session expired" {
		t.Errorf("API error: %v (code %s)", err, tether.ErrorCode(err))
	}
	_, err = c.Workspaces(ctx, false)
	if tether.ErrorCode(err) != tether.EUNAVAILABLE || err.Error() != "server answered 502 Bad Gateway: <html>502 Bad Gateway</html>" {
		t.Errorf("proxy error: %q (code %s)", err, tether.ErrorCode(err))
	}
	_, err = c.DialWebSocket(ctx, "/api/v2/users/me", nil)
	if tether.ErrorCode(err) != tether.EUNAUTHORIZED {
		t.Errorf("refused WebSocket: %v", err)
	}
}

// Lists come a page at a time; the client follows the links to the end
// and keeps the query it was asked for.
func TestListPages(t *testing.T) {
	const total = 7
	var requests []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.URL.RawQuery)
		q := r.URL.Query()
		if q.Get("owner") != "me" {
			t.Errorf("request %s lost owner=me", r.URL)
		}
		start := 0
		if a := q.Get("after"); a != "" {
			start, _ = strconv.Atoi(strings.TrimPrefix(a, "me/w"))
			start++
		}
		const size = 3
		var page []tether.Workspace
		for i := start; i < min(start+size, total); i++ {
			page = append(page, tether.Workspace{Name: fmt.Sprintf("w%d", i)})
		}
		if start+size < total {
			q.Set("after", fmt.Sprintf("me/w%d", start+size-1))
			w.Header().Set("Link", "<?"+q.Encode()+`>; rel="next"`)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(page)
	}))
	defer ts.Close()
	c, _ := New(ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.Workspaces(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range list {
		names = append(names, w.Name)
	}
	if got := strings.Join(names, " "); got != "w0 w1 w2 w3 w4 w5 w6" {
		t.Errorf("listed %s in %d requests (%v)", got, len(requests), requests)
	}
	if len(requests) != 3 {
		t.Errorf("%d requests, want 3: %v", len(requests), requests)
	}
}

func TestNextCursor(t *testing.T) {
	tests := []struct {
		link, want string
		ok         bool
	}{
		{`<?after=alice%2Fdev&limit=100>; rel="next"`, "alice/dev", true},
		{`</api/v2/users?after=bob>; rel="next"`, "bob", true},
		{`<?after=x>; rel="prev", <?after=y>; rel=next`, "y", true},
		{`<?after=x>; rel="prev", <?after=y>; rel="next"`, "y", true},
		{`<?limit=3>; rel="next"`, "", false},
		{``, "", false},
	}
	for _, tc := range tests {
		h := http.Header{}
		if tc.link != "" {
			h.Set("Link", tc.link)
		}
		got, ok := nextCursor(h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("nextCursor(%q) = %q, %v; want %q, %v", tc.link, got, ok, tc.want, tc.ok)
		}
	}
}

// A server that answers with a certificate this machine does not trust is
// named as such, not as a server that may not be running.
func TestUntrustedCertificate(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ts.Close()
	c, _ := New(ts.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Me(ctx)
	if tether.ErrorCode(err) != tether.EUNAVAILABLE || !strings.Contains(tether.ErrorMessage(err), "does not trust the certificate") {
		t.Errorf("untrusted certificate: %v (code %s)", err, tether.ErrorCode(err))
	}
	_, err = c.DialWebSocket(ctx, "/api/v2/users/me", nil)
	if !strings.Contains(tether.ErrorMessage(err), "does not trust the certificate") {
		t.Errorf("untrusted certificate, WebSocket: %v", err)
	}

	ts.Close()
	_, err = c.Me(ctx)
	if !strings.Contains(tether.ErrorMessage(err), "is it running") {
		t.Errorf("server gone: %v", err)
	}
}
