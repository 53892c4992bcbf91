package handoff

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzVerify feeds Verify anything a browser could put in the hand-off
// link: it must never panic, and must accept only what was signed.
func FuzzVerify(f *testing.F) {
	pub, priv := testKey(f)
	proxy := uuid.MustParse("6f1c2e0a-8d5b-4c1e-9a3f-2b7d4e5f6a7b")
	now := time.Unix(1_800_000_000, 0)
	tok, err := Sign(priv, testClaims(proxy, now))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("e30.AAAA")
	f.Add(".")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Verify(pub, s, proxy, now)
		if err == nil && s != tok {
			// Ed25519 signatures are not malleable; base64 may be.
			again, _ := Sign(priv, c)
			if _, err := Verify(pub, again, proxy, now); err != nil {
				t.Fatalf("accepted %q, whose claims do not verify when signed", s)
			}
		}
	})
}
