package cli

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tetherdev/tether"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParsePortSpecs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string // local->remote
		wantErr string
	}{
		{"8080:80", []string{"127.0.0.1:8080->80"}, ""},
		{"22", []string{"127.0.0.1:22->22"}, ""},
		{"0:80", []string{"127.0.0.1:0->80"}, ""},
		{"0.0.0.0:8080:80", []string{"0.0.0.0:8080->80"}, ""},
		{"[::1]:8080:80", []string{"[::1]:8080->80"}, ""},
		{"[::]:80", []string{"[::]:80->80"}, ""},
		{"8000-8002:9000-9002", []string{"127.0.0.1:8000->9000", "127.0.0.1:8001->9001", "127.0.0.1:8002->9002"}, ""},
		{"8000-8001", []string{"127.0.0.1:8000->8000", "127.0.0.1:8001->8001"}, ""},
		{"[::1]:8000-8001:8000-8001", []string{"[::1]:8000->8000", "[::1]:8001->8001"}, ""},
		{"8080:80,9090:90", []string{"127.0.0.1:8080->80", "127.0.0.1:9090->90"}, ""},
		{"8080:0", nil, "from 1 to 65535"},
		{"a:b", nil, "ports are numbers"},
		{"1:2:3:4", nil, "brackets"},
		{"::1:8080:80", nil, "brackets"},
		{"[::1]8080:80", nil, "brackets"},
		{"70000:80", nil, "ports are numbers"},
		{"8000-8002:9000", nil, "differ in length"},
		{"8002-8000", nil, "ends before it starts"},
		{"1-2000", nil, "more than 1000"},
		{"host.example:8080:80", nil, "not an IP address"},
	}
	for _, tc := range tests {
		specs, err := parsePortSpecs("tcp", tc.in)
		var got []string
		for _, s := range specs {
			got = append(got, fmt.Sprintf("%s->%d", s.local, s.remote))
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parsePortSpecs(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("parsePortSpecs(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
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
