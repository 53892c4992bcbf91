package tether_test

import (
	"testing"

	"github.com/tetherdev/tether"
)

// Found by FuzzReadTemplate: app and health check URLs on ports that
// cannot exist were accepted.
func TestTemplateValidatePorts(t *testing.T) {
	for _, tc := range []struct {
		url, health string
		ok          bool
	}{
		{"http://127.0.0.1:8080", "", true},
		{"http://127.0.0.1", "http://127.0.0.1:65535/healthz", true},
		{"http://127.0.0.1:0", "", false},
		{"http://127.0.0.1:99999", "", false},
		{"http://127.0.0.1:", "", false},
		{"http://[::1]:65536/", "", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:0/h", false},
	} {
		a := tether.App{Name: "web", URL: tc.url}
		if tc.health != "" {
			a.Healthcheck = &tether.Healthcheck{URL: tc.health}
		}
		req := tether.PushTemplateRequest{Name: "py", Apps: []tether.App{a}}
		if err := req.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%s, health %q) = %v, want ok %v", tc.url, tc.health, err, tc.ok)
		}
	}
}
