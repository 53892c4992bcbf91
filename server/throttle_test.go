package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// throttleFixture trusts the test's loopback connections as a proxy, so
// that X-Forwarded-For can play many sources.
func throttleFixture(t *testing.T) (*fixture, *syncBuffer) {
	logs := &syncBuffer{}
	f := newFixture(t, fixtureOptions{edit: func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}})
	return f, logs
}

// login signs in from source and returns the status and Retry-After.
func (f *fixture) login(source, login, password string) (int, string, string) {
	f.t.Helper()
	r := post("/api/v2/users/login", `{"login":"`+login+`","password":"`+password+`"}`)(f)
	r.header.Set("X-Forwarded-For", source)
	resp, body := f.do(r)
	return resp.StatusCode, resp.Header.Get("Retry-After"), body
}

func TestLoginThrottlePerAccount(t *testing.T) {
	f, logs := throttleFixture(t)
	const attacker = "192.0.2.1"
	for i := range accountBurst {
		if code, _, body := f.login(attacker, "bob", "guess-"+strconv.Itoa(i)); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i+1, code, body)
		}
	}
	// The account is spent: even the right password waits, from anywhere
	// that never signed in to it, and the answer says for how long.
	for _, src := range []string{attacker, "198.51.100.9"} {
		code, retry, body := f.login(src, "bob", ownerPassword)
		if code != http.StatusTooManyRequests || retry != "60" || !strings.Contains(body, "wait a minute") {
			t.Errorf("from %s after %d failures: %d, Retry-After %q, %s; want 429, 60, a wait in words", src, accountBurst, code, retry, body)
		}
	}
	// The name typed in another case is the same account; a throttled
	// attempt costs nothing more.
	if code, _, _ := f.login(attacker, " BOB ", "x"); code != http.StatusTooManyRequests {
		t.Errorf("the same account in capitals: %d, want 429", code)
	}
	f.clock.advance(accountRefill)
	if code, _, body := f.login(attacker, "bob", ownerPassword); code != http.StatusOK {
		t.Errorf("a minute later: %d %s, want 200", code, body)
	}

	// Failed sign-ins are logged with the name and the source, never the
	// password.
	out := logs.String()
	for _, want := range []string{"sign-in failed: wrong password", "login=bob", "source=" + attacker, "too many failures"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "guess-") || strings.Contains(out, ownerPassword) {
		t.Errorf("the log holds a password:\n%s", out)
	}
}

// TestLoginThrottleSameForUnknownUsers: the throttle tells nothing about
// which users exist.
func TestLoginThrottleSameForUnknownUsers(t *testing.T) {
	f, logs := throttleFixture(t)
	for _, name := range []string{"bob", "nobody"} {
		var got []int
		for range accountBurst + 1 {
			code, _, _ := f.login("192.0.2.7", name, "wrong-password")
			got = append(got, code)
		}
		if got[accountBurst-1] != http.StatusUnauthorized || got[accountBurst] != http.StatusTooManyRequests {
			t.Errorf("%s: %v, want %d × 401 then 429", name, got, accountBurst)
		}
	}
	if !strings.Contains(logs.String(), "sign-in failed: no such user") {
		t.Errorf("a sign-in as a user that does not exist is not logged:\n%s", logs)
	}
}

// TestLoginThrottleSuccessResetsNothing: nobody's successful sign-in gives
// an attacker a fresh budget, and the account's owner, signing in from
// where they did before, is not locked out by an attacker elsewhere.
func TestLoginThrottleSuccessResetsNothing(t *testing.T) {
	f, _ := throttleFixture(t)
	const attacker, home = "192.0.2.1", "198.51.100.7"
	if code, _, body := f.login(home, "bob", ownerPassword); code != http.StatusOK {
		t.Fatalf("bob at home: %d %s", code, body)
	}
	for range accountBurst - 1 {
		f.login(attacker, "bob", "guess")
	}
	// The attacker signs in to an account of their own, and bob signs in
	// again: neither refills the attacker's budget on bob's account.
	if code, _, _ := f.login(attacker, "carol", otherPassword); code != http.StatusOK {
		t.Fatalf("carol: %d", code)
	}
	if code, _, _ := f.login(home, "bob", ownerPassword); code != http.StatusOK {
		t.Fatalf("bob at home again: %d", code)
	}
	if code, _, _ := f.login(attacker, "bob", "guess"); code != http.StatusUnauthorized {
		t.Fatalf("the attacker's last try: %d", code)
	}
	if code, _, _ := f.login(attacker, "bob", "guess"); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures in all: %d, want 429", accountBurst+1, code)
	}
	// Bob, from home, is not locked out; a new place is.
	if code, _, body := f.login(home, "bob", ownerPassword); code != http.StatusOK {
		t.Errorf("bob at home while an attacker drained his account: %d %s", code, body)
	}
	if code, _, _ := f.login("203.0.113.50", "bob", ownerPassword); code != http.StatusTooManyRequests {
		t.Errorf("bob from a new address while drained: %d, want 429", code)
	}
}

// failUsers makes n users of the fixture's (existing users answer fast:
// their test hashes are cheap) for failures spread over accounts.
func (f *fixture) failUsers(n int) []string {
	var names []string
	for range n {
		names = append(names, f.addUser(f.name("user"), "member", "some-password").Username)
	}
	return names
}

func TestLoginThrottlePerSource(t *testing.T) {
	f, _ := throttleFixture(t)
	names := f.failUsers(sourceBurst / accountBurst)
	for i := range sourceBurst {
		if code, _, _ := f.login("192.0.2.1", names[i%len(names)], "x"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	code, retry, _ := f.login("192.0.2.1", "bob", ownerPassword)
	if code != http.StatusTooManyRequests || retry != strconv.Itoa(int(sourceRefill.Seconds())) {
		t.Errorf("after %d failures from one address: %d, Retry-After %q; want 429, %v", sourceBurst, code, retry, sourceRefill.Seconds())
	}
	if code, _, _ := f.login("192.0.2.2", "bob", ownerPassword); code != http.StatusOK {
		t.Errorf("another address: %d, want 200", code)
	}
	// An IPv6 client's /64 is one source.
	names = f.failUsers(sourceBurst / accountBurst)
	for i := range sourceBurst {
		f.login("2001:db8:1:2::"+strconv.FormatInt(int64(i+1), 16), names[i%len(names)], "x")
	}
	if code, _, _ := f.login("2001:db8:1:2::ffff", "bob", ownerPassword); code != http.StatusTooManyRequests {
		t.Errorf("a spent IPv6 /64: %d, want 429", code)
	}
	if code, _, _ := f.login("2001:db8:1:3::1", "bob", ownerPassword); code != http.StatusOK {
		t.Errorf("another /64: %d, want 200", code)
	}
}

// TestLoginThrottleIgnoresForwardedFor: without --trusted-proxies the
// source is the connection's peer, whatever X-Forwarded-For claims.
func TestLoginThrottleIgnoresForwardedFor(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	names := f.failUsers(sourceBurst / accountBurst)
	for i := range sourceBurst {
		f.login("192.0.2."+strconv.Itoa(i+1), names[i%len(names)], "x")
	}
	if code, _, _ := f.login("198.51.100.1", "bob", ownerPassword); code != http.StatusTooManyRequests {
		t.Errorf("a client rotating X-Forwarded-For escaped the throttle: %d, want 429", code)
	}
}

func TestClientAddress(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		remote, xff string
		trusted     []netip.Prefix
		want        string
	}{
		{"192.0.2.1:5000", "", nil, "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.1", nil, "192.0.2.1"},
		{"192.0.2.1:5000", "198.51.100.1", proxies, "192.0.2.1"},
		{"10.0.0.2:5000", "198.51.100.1", proxies, "198.51.100.1"},
		{"10.0.0.2:5000", "203.0.113.9, 198.51.100.1", proxies, "198.51.100.1"},
		{"10.0.0.2:5000", "198.51.100.1, 10.0.0.3", proxies, "198.51.100.1"},
		{"10.0.0.2:5000", "garbage, 10.0.0.3", proxies, "10.0.0.3"},
		{"10.0.0.2:5000", "", proxies, "10.0.0.2"},
		{"[::ffff:192.0.2.1]:5000", "", nil, "192.0.2.1"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := clientAddress(r, tc.trusted).String(); got != tc.want {
			t.Errorf("%s with X-Forwarded-For %q (trusting %v): %s, want %s", tc.remote, tc.xff, tc.trusted, got, tc.want)
		}
	}
}

// TestThrottleMemoryBounded: failures under made-up names cannot grow the
// throttle's memory without end.
func TestThrottleMemoryBounded(t *testing.T) {
	b := newBuckets(accountBurst, accountRefill)
	now := time.Now()
	for i := range maxThrottleEntries + 100 {
		b.fail("name"+strconv.Itoa(i), now)
	}
	if len(b.m) > maxThrottleEntries {
		t.Errorf("%d buckets, more than %d", len(b.m), maxThrottleEntries)
	}
}

func TestRetryAfterWords(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second: "a second", 6 * time.Second: "6 seconds", time.Minute: "a minute", 90 * time.Second: "a minute", 5 * time.Minute: "5 minutes",
	} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%s) = %q, want %q", d, got, want)
		}
	}
}
