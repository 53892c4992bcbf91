package tether_test

import (
	"strings"
	"testing"
	"time"

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

func TestTemplateValidateStartupScript(t *testing.T) {
	tests := []struct {
		name        string
		script      string
		timeout     tether.Duration
		wantErr     string
		wantTimeout tether.Duration
	}{
		{name: "none"},
		{name: "default timeout", script: "make deps\n", wantTimeout: tether.DefaultStartupScriptTimeout},
		{name: "own timeout", script: "make deps", timeout: tether.Duration(5 * time.Minute), wantTimeout: tether.Duration(5 * time.Minute)},
		{name: "timeout alone", timeout: tether.Duration(time.Minute), wantErr: "startup_script_timeout without a startup_script"},
		{name: "blank", script: " \n\t", wantErr: "startup_script is blank"},
		{name: "too big", script: strings.Repeat("#", tether.MaxStartupScriptSize+1), wantErr: "more than the 65536 allowed"},
		{name: "binary", script: "echo \x00", wantErr: "must be text"},
		{name: "not UTF-8", script: "echo \xff", wantErr: "must be text"},
		{name: "timeout too short", script: "true", timeout: tether.Duration(time.Millisecond), wantErr: "startup_script_timeout 1ms must be from 1s to 24h0m0s"},
		{name: "timeout too long", script: "true", timeout: tether.Duration(25 * time.Hour), wantErr: "must be from 1s to 24h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tether.PushTemplateRequest{Name: "dev", StartupScript: tt.script, StartupScriptTimeout: tt.timeout}
			err := req.Validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.StartupScriptTimeout != tt.wantTimeout {
				t.Errorf("timeout = %s, want %s", time.Duration(req.StartupScriptTimeout), time.Duration(tt.wantTimeout))
			}
		})
	}
}

func TestStartupScriptStatusValid(t *testing.T) {
	zero, three := 0, 3
	now := time.Now()
	tests := []struct {
		name string
		s    tether.StartupScriptStatus
		want bool
	}{
		{"running", tether.StartupScriptStatus{Status: tether.StartupScriptRunning}, true},
		{"running with an exit code", tether.StartupScriptStatus{Status: tether.StartupScriptRunning, ExitCode: &zero}, false},
		{"succeeded", tether.StartupScriptStatus{Status: tether.StartupScriptSucceeded, ExitCode: &zero, FinishedAt: &now}, true},
		{"succeeded with 3", tether.StartupScriptStatus{Status: tether.StartupScriptSucceeded, ExitCode: &three, FinishedAt: &now}, false},
		{"failed", tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: &three, FinishedAt: &now}, true},
		{"failed, unfinished", tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: &three}, false},
		{"timed out", tether.StartupScriptStatus{Status: tether.StartupScriptTimedOut, ExitCode: &three, FinishedAt: &now}, true},
		{"unknown", tether.StartupScriptStatus{Status: "done"}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Valid(); got != tt.want {
			t.Errorf("%s: Valid = %v, want %v", tt.name, got, tt.want)
		}
	}
}
