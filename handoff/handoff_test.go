package handoff

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/tetherdev/tether"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 7
	priv := ed25519.NewKeyFromSeed(seed)
	return priv.Public().(ed25519.PublicKey), priv
}

func testClaims(proxy uuid.UUID, now time.Time) Claims {
	return Claims{
		ID: "id1", Proxy: proxy, IssuedAt: now.Unix(), Expires: now.Add(Lifetime).Unix(),
		User: uuid.New(), Username: "alice", Session: "abc",
		Workspace: uuid.New(), WorkspaceName: "dev", OwnerID: uuid.New(), Owner: "alice",
		Scope: ScopeTerminal,
	}
}

// TestVerify attacks the token: each way of getting it wrong is refused,
// with the error that says why.
func TestVerify(t *testing.T) {
	pub, priv := testKey(t)
	proxy := uuid.New()
	now := time.Unix(1_800_000_000, 0)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	sign := func(k ed25519.PrivateKey, c Claims) string {
		tok, err := Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := testClaims(proxy, now)
	app := good
	app.Scope, app.App, app.Host = ScopeApp, &tether.App{Name: "web", URL: "http://127.0.0.1:8080", Share: tether.SharePublic}, "web--dev--alice.apps.example.com"
	anon := app
	anon.User, anon.Username, anon.Session = uuid.Nil, "", ""
	tamper := func(tok string) string {
		payload, sig, _ := strings.Cut(tok, ".")
		body, _ := base64.RawURLEncoding.DecodeString(payload)
		body = []byte(strings.Replace(string(body), `"own":"alice"`, `"own":"bobby"`, 1))
		return base64.RawURLEncoding.EncodeToString(body) + "." + sig
	}
	mod := func(f func(*Claims)) Claims { c := good; f(&c); return c }
	for _, tc := range []struct {
		name  string
		token string
		proxy uuid.UUID
		at    time.Time
		want  error
	}{
		{"terminal", sign(priv, good), proxy, now, nil},
		{"app", sign(priv, app), proxy, now, nil},
		{"public app for anyone", sign(priv, anon), proxy, now, nil},
		{"anonymous terminal", sign(priv, mod(func(c *Claims) { c.User = uuid.Nil })), proxy, now, ErrMalformed},
		{"app scope without app", sign(priv, mod(func(c *Claims) { c.Scope = ScopeApp })), proxy, now, ErrMalformed},
		{"unknown scope", sign(priv, mod(func(c *Claims) { c.Scope = "admin" })), proxy, now, ErrMalformed},
		{"wrong proxy", sign(priv, good), uuid.New(), now, ErrWrongProxy},
		{"expired", sign(priv, good), proxy, now.Add(Lifetime), ErrExpired},
		{"from the future", sign(priv, good), proxy, now.Add(-time.Minute), ErrExpired},
		{"too long a life", sign(priv, mod(func(c *Claims) { c.Expires = now.Add(time.Hour).Unix() })), proxy, now, ErrExpired},
		{"tampered", tamper(sign(priv, good)), proxy, now, ErrSignature},
		{"another key", sign(otherPriv, good), proxy, now, ErrSignature},
		{"no signature", strings.Split(sign(priv, good), ".")[0], proxy, now, ErrMalformed},
		{"empty", "", proxy, now, ErrMalformed},
		{"huge", strings.Repeat("a", maxTokenLength+1), proxy, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(pub, tc.token, tc.proxy, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestVerifyGrant: a redeemed token still proves its grant to the primary
// long after the redirect's minute, until the grant's own life ends; what
// Verify refuses for any other reason, VerifyGrant refuses too.
func TestVerifyGrant(t *testing.T) {
	pub, priv := testKey(t)
	proxy := uuid.New()
	now := time.Unix(1_800_000_000, 0)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	const maxAge = 8 * time.Hour
	sign := func(k ed25519.PrivateKey, c Claims) string {
		tok, err := Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := testClaims(proxy, now)
	good.Generation = "g1"
	for _, tc := range []struct {
		name  string
		token string
		proxy uuid.UUID
		at    time.Time
		want  error
	}{
		{"at once", sign(priv, good), proxy, now, nil},
		{"past the redirect's expiry", sign(priv, good), proxy, now.Add(2 * Lifetime), nil},
		{"just before the grant ends", sign(priv, good), proxy, now.Add(maxAge - time.Second), nil},
		{"the grant ended", sign(priv, good), proxy, now.Add(maxAge), ErrExpired},
		{"from the future", sign(priv, good), proxy, now.Add(-time.Minute), ErrExpired},
		{"for another proxy", sign(priv, good), uuid.New(), now, ErrWrongProxy},
		{"another key", sign(otherPriv, good), proxy, now, ErrSignature},
		{"too long a life", sign(priv, func() Claims { c := good; c.Expires = now.Add(maxAge).Unix(); return c }()), proxy, now, ErrExpired},
		{"malformed", "x.y", proxy, now, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := VerifyGrant(pub, tc.token, tc.proxy, tc.at, maxAge)
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyGrant = %v, want %v", err, tc.want)
			}
			if err == nil && c.Generation != "g1" {
				t.Fatalf("generation %q lost", c.Generation)
			}
		})
	}
}

func TestRedeemedOnce(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := testClaims(uuid.New(), now)
	var r Redeemed
	if !r.Once(c, now) {
		t.Fatal("first redemption refused")
	}
	if r.Once(c, now.Add(time.Second)) {
		t.Fatal("replay accepted")
	}
	other := c
	other.ID = "id2"
	if !r.Once(other, now) {
		t.Fatal("another token refused")
	}
	// Forgotten only once Verify would refuse it anyway.
	if r.Once(c, now.Add(Lifetime)) {
		t.Fatal("replay accepted right after expiry")
	}
	if !r.Once(c, now.Add(Lifetime+clockSkew+time.Second)) || len(r.ids) != 1 {
		t.Fatalf("expired IDs kept: %v", r.ids)
	}
}
