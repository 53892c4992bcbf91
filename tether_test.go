package tether_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tetherdev/tether"
	"tailscale.com/types/key"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"dev", "a", "my-box2", "x1-y2"} {
		if err := tether.ValidateName("workspace", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Dev", "-a", "a-", "a--b", "a_b", "1abc", "a.b", strings.Repeat("a", 21)} {
		if err := tether.ValidateName("workspace", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestNodeValidate(t *testing.T) {
	id := uuid.New()
	good := func() *tether.Node {
		return &tether.Node{
			Key:       key.NewNode().Public(),
			DiscoKey:  key.NewDisco().Public(),
			Addresses: []netip.Prefix{netip.PrefixFrom(tether.TunnelIP(id), 128)},
			AsOf:      time.Now(),
		}
	}
	if err := good().Validate(id); err != nil {
		t.Fatalf("good node: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*tether.Node)
		want   string
	}{
		{"another peer's address", func(n *tether.Node) { n.Addresses[0] = netip.PrefixFrom(tether.TunnelIP(uuid.New()), 128) }, "not this peer's"},
		{"no addresses", func(n *tether.Node) { n.Addresses = nil }, "addresses"},
		{"no disco key", func(n *tether.Node) { n.DiscoKey = key.DiscoPublic{} }, "disco key"},
		{"too many endpoints", func(n *tether.Node) { n.Endpoints = make([]netip.AddrPort, tether.MaxNodeEndpoints+1) }, "endpoints"},
		{"negative DERP", func(n *tether.Node) { n.PreferredDERP = -1 }, "negative"},
		{"long region key", func(n *tether.Node) { n.DERPLatency = map[string]float64{strings.Repeat("9", 33): 1} }, "longer than 32"},
	}
	for _, tc := range tests {
		n := good()
		tc.mutate(n)
		if err := n.Validate(id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	if ip := tether.TunnelIP(id); !tether.TunnelPrefix.Contains(ip) {
		t.Errorf("TunnelIP %s is outside %s", ip, tether.TunnelPrefix)
	}
}

func TestTemplateValidateDefaults(t *testing.T) {
	req := tether.PushTemplateRequest{Name: "py", Apps: []tether.App{{Name: "web", URL: "http://127.0.0.1:8080",
		Healthcheck: &tether.Healthcheck{URL: "http://127.0.0.1:8080/h"}}}}
	if err := req.Validate(); err != nil {
		t.Fatal(err)
	}
	a := req.Apps[0]
	if a.Share != tether.ShareOwner || a.Healthcheck.Interval != tether.Duration(5*time.Second) || a.Healthcheck.Threshold != 3 {
		t.Errorf("defaults not applied: %+v %+v", a, a.Healthcheck)
	}
}

// Words the API uses in the place of a username cannot be taken.
func TestValidateUsername(t *testing.T) {
	for _, name := range tether.ReservedUsernames {
		err := tether.ValidateUsername(name)
		if err == nil || !strings.Contains(err.Error(), "reserved") || tether.ErrorCode(err) != tether.EINVALID {
			t.Errorf("ValidateUsername(%q) = %v, want a refusal that says it is reserved", name, err)
		}
	}
	for _, name := range []string{"alice", "meg", "mee", "firstly"} {
		if err := tether.ValidateUsername(name); err != nil {
			t.Errorf("ValidateUsername(%q) = %v", name, err)
		}
	}
	if err := tether.ValidateUsername("Me"); err == nil {
		t.Error("an invalid name was accepted")
	}
}

// App and health check URLs must name a port that exists.
func TestTemplateValidateURLs(t *testing.T) {
	app := func(url, health string) tether.PushTemplateRequest {
		a := tether.App{Name: "web", URL: url}
		if health != "" {
			a.Healthcheck = &tether.Healthcheck{URL: health}
		}
		return tether.PushTemplateRequest{Name: "py", Apps: []tether.App{a}}
	}
	tests := []struct {
		name        string
		url, health string
		want        string // in the error; "" for accepted
	}{
		{"default port", "http://127.0.0.1", "", ""},
		{"https", "https://localhost:8443/app", "", ""},
		{"IPv6", "http://[::1]:8080", "http://[::1]:8080/healthz", ""},
		{"highest port", "http://127.0.0.1:65535", "", ""},
		{"port 0", "http://127.0.0.1:0", "", "port \"0\""},
		{"port 99999", "http://127.0.0.1:99999", "", "port \"99999\""},
		{"empty port", "http://127.0.0.1:/", "", "a port must be a number"},
		{"no host", "http://:8080", "", "with a host"},
		{"user info", "http://u:p@127.0.0.1:8080", "", "user name or password"},
		{"health port 0", "http://127.0.0.1:8080", "http://127.0.0.1:0/h", "healthcheck url"},
		{"health port too big", "http://127.0.0.1:8080", "http://127.0.0.1:70000/h", "healthcheck url"},
		{"health not http", "http://127.0.0.1:8080", "tcp://127.0.0.1:8080", "healthcheck url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := app(tc.url, tc.health)
			err := req.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
}
