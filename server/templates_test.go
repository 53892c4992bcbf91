package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
)

// The dashboard uploads template files as YAML; mistakes come back with
// their line, and a good file becomes the template.
func TestPostTemplateYAML(t *testing.T) {
	ts := newTestServer(t, Options{}, nil)
	alice := ts.firstAdmin("alice")
	bob := ts.addUser(alice, "bob", tether.RoleMember)
	post := func(token, contentType, body string) (int, string) {
		t.Helper()
		r, _ := http.NewRequestWithContext(testContext(t), "POST", ts.http.URL+"/api/v2/templates", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		r.Header.Set(tether.SessionTokenHeader, token)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good := "name: py\napps:\n  - name: web\n    url: http://127.0.0.1:8080\n    share: owner\n"
	tests := []struct {
		name, token, ct, body string
		status                int
		says                  string
	}{
		{"unknown field", alice, "application/yaml", "name: py\nappz: []\n", 400, "line 2: field appz not found"},
		{"broken YAML", alice, "application/yaml; charset=utf-8", "name: py\napps:\n  - name: [\n", 400, "line 3"},
		{"invalid value", alice, "text/yaml", "name: py\napps:\n  - name: web\n    url: ftp://x\n    share: owner\n", 400, "url"},
		{"members may not", bob, "application/yaml", good, 403, "only admins"},
		{"good", alice, "application/yaml", good, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(tc.token, tc.ct, tc.body)
			if tc.status != 200 {
				wantError(t, code, body, tc.status, tc.says)
				return
			}
			var tpl tether.Template
			if code != 200 || json.Unmarshal([]byte(body), &tpl) != nil || tpl.Name != "py" || len(tpl.Apps) != 1 {
				t.Fatalf("%d %s", code, body)
			}
		})
	}
}
