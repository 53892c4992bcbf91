package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
	"github.com/tetherdev/tether/cli/option"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParsePortSpec(t *testing.T) {
	tests := []struct {
		in, local string
		remote    uint16
		wantErr   bool
	}{
		{"8080:80", "127.0.0.1:8080", 80, false},
		{"22", "127.0.0.1:22", 22, false},
		{"0.0.0.0:8080:80", "0.0.0.0:8080", 80, false},
		{"8080:0", "", 0, true},
		{"a:b", "", 0, true},
		{"1:2:3:4", "", 0, true},
		{"70000:80", "", 0, true},
	}
	for _, tc := range tests {
		p, err := parsePortSpec("tcp", tc.in)
		if (err != nil) != tc.wantErr || (!tc.wantErr && (p.local != tc.local || p.remote != tc.remote)) {
			t.Errorf("parsePortSpec(%q) = %+v, %v", tc.in, p, err)
		}
	}
}

func TestReplaceSSHBlock(t *testing.T) {
	block := sshBlock("/usr/bin/tether", "/home/me/.config/tether")
	mine := "Host box\n  HostName 10.0.0.1\n"
	tests := []struct {
		name, old, want string
		wantErr         bool
	}{
		{"empty file", "", block, false},
		{"prepended to the user's hosts", mine, block + "\n" + mine, false},
		{"replaced in place", mine + sshBlockStart + "\nold\n" + sshBlockEnd + "\n" + "Host z\n", mine + block + "Host z\n", false},
		{"damaged markers", mine + sshBlockEnd + "\n" + sshBlockStart + "\n", "", true},
		{"start without end", sshBlockStart + "\n", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := replaceSSHBlock([]byte(tc.old), block)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tc.wantErr && string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
	if !strings.Contains(sshBlock("/opt/my apps/tether", "/c"), `ProxyCommand "/opt/my apps/tether"`) {
		t.Error("a path with a space is not quoted")
	}
}

func TestFormatError(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("plain"), "error: plain"},
		{fmt.Errorf("create: %w", tether.Errorf(tether.ECONFLICT, "workspace dev already exists")), "error: create: workspace dev already exists"},
		{&tether.Error{Code: tether.EINVALID, Message: "bad", Detail: "field x"}, "error: bad: field x"},
		{tether.Errorf(tether.EINTERNAL, "internal server error"), "error: internal server error\nhint: the server logged the details"},
	}
	for _, tc := range tests {
		if got := formatError(tc.err); got != tc.want {
			t.Errorf("formatError(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestOptionsFromEnvironment(t *testing.T) {
	var url, token string
	var n int
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().StringVar(&url, "access-url", "", "")
	cmd.Flags().StringVar(&token, "token", "", "")
	cmd.Flags().IntVar(&n, "count", 1, "")
	option.SetEnv(cmd.Flags(), "token", "TETHER_AGENT_TOKEN")
	env := map[string]string{"TETHER_ACCESS_URL": "https://env", "TETHER_AGENT_TOKEN": "t", "TETHER_COUNT": "5"}
	if err := cmd.ParseFlags([]string{"--count", "7"}); err != nil {
		t.Fatal(err)
	}
	if err := option.Apply(cmd, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if url != "https://env" || token != "t" || n != 7 {
		t.Errorf("got url=%q token=%q count=%d; the flag must win over the environment", url, token, n)
	}
	env["TETHER_COUNT"] = "many"
	cmd2 := &cobra.Command{Use: "y"}
	cmd2.Flags().IntVar(&n, "count", 1, "")
	err := option.Apply(cmd2, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "$TETHER_COUNT") {
		t.Errorf("bad value in the environment: %v", err)
	}
}

func TestDescribeStartup(t *testing.T) {
	code := func(n int) *int { return &n }
	tests := []struct {
		st   *tether.StartupScriptStatus
		want string
	}{
		{nil, "-"},
		{&tether.StartupScriptStatus{Status: tether.StartupScriptRunning}, "running"},
		{&tether.StartupScriptStatus{Status: tether.StartupScriptSucceeded, ExitCode: code(0)}, "succeeded"},
		{&tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: code(3)}, "failed (exit 3)"},
		{&tether.StartupScriptStatus{Status: tether.StartupScriptFailed, ExitCode: code(-1)}, "failed"},
		{&tether.StartupScriptStatus{Status: tether.StartupScriptTimedOut, ExitCode: code(-1)}, "timed out"},
	}
	for _, tt := range tests {
		if got := describeStartup(tt.st); got != tt.want {
			t.Errorf("describeStartup(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}
