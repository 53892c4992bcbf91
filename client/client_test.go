package client

import (
	"context"
	"net/http"
	"net/http/httptest"
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
