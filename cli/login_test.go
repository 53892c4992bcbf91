package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLoginErrors: a login against something that is not a Tether server,
// or against a plain-HTTP server named without a scheme, says so.
func TestLoginErrors(t *testing.T) {
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<!doctype html><html><body>Welcome to nginx!</body></html>"))
	}))
	defer html.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	tests := []struct {
		name  string
		url   string
		want  string
		lines int
	}{
		{"an HTML page", html.URL, html.URL + " is not a Tether server: it answered the API with something other than JSON", 1},
		{"a wrong path", html.URL + "/wrong", "", 0}, // HTML again, below
		{"no API there", notFound.URL, notFound.URL + " is not a Tether server: it has no Tether API (server answered 404 Not Found)", 1},
		{"plain HTTP without a scheme", strings.TrimPrefix(html.URL, "http://"), "if the server has no TLS, run `tether login " + html.URL + "`", 3},
	}
	for _, tc := range tests {
		if tc.want == "" {
			tc.want, tc.lines = "is not a Tether server", 1
		}
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			env, _, stderr := testEnv()
			code := Run(ctx, Root(env), env, []string{"login", tc.url, "--username", "u", "--password", "p", "--config-dir", t.TempDir()})
			got := strings.TrimSpace(stderr.String())
			if code != 1 || !strings.Contains(got, tc.want) || strings.Count(got, "\n")+1 > tc.lines {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and at most %d lines with %q", code, got, tc.lines, tc.want)
			}
		})
	}
}

func TestAgentWithoutURL(t *testing.T) {
	env, _, stderr := testEnv()
	env.Getenv = func(k string) string {
		if k == "TETHER_AGENT_TOKEN" {
			return "token"
		}
		return ""
	}
	code := Run(t.Context(), Root(env), env, []string{"agent"})
	if code != 1 || !strings.Contains(stderr.String(), "pass --url or set TETHER_AGENT_URL") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
