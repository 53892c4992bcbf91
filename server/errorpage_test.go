package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
)

// TestWriteErrorForBrowsers: a browser's navigation gets an HTML page with
// the message escaped; API clients keep the JSON error.
func TestWriteErrorForBrowsers(t *testing.T) {
	access, _ := url.Parse("http://tether.example.com:3000")
	s := &Server{accessURL: access}
	err := tether.Errorf(tether.ENOTFOUND, "app <b>web</b> of workspace alice/dev not found")
	tests := []struct {
		name, method, accept string
		html                 bool
	}{
		{"browser navigation", http.MethodGet, "text/html,application/xhtml+xml,*/*;q=0.8", true},
		{"dashboard fetch", http.MethodGet, "application/json", false},
		{"no accept", http.MethodGet, "", false},
		{"form post", http.MethodPost, "text/html", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/@alice/dev/apps/web/", nil)
			r.Header.Set("Accept", tc.accept)
			w := httptest.NewRecorder()
			s.writeError(w, r, err)
			if w.Code != http.StatusNotFound {
				t.Errorf("status %d, want 404", w.Code)
			}
			body := w.Body.String()
			if !tc.html {
				var resp tether.ErrorResponse
				if jerr := json.Unmarshal([]byte(body), &resp); jerr != nil || resp.Code != tether.ENOTFOUND {
					t.Errorf("want a JSON error, got %q (%v)", body, jerr)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
				t.Errorf("Content-Type %q, want text/html", ct)
			}
			for _, want := range []string{
				"<h1>Not Found</h1>",
				"App &lt;b&gt;web&lt;/b&gt; of workspace alice/dev not found",
				`href="http://tether.example.com:3000/"`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q:\n%s", want, body)
				}
			}
			if strings.Contains(body, "<b>web</b>") {
				t.Error("the message reached the page unescaped")
			}
		})
	}
}
