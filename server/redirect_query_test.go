package server

import (
	"net/url"
	"testing"
)

// The app sign-in's redirect is a well-formed URL: characters a URL may
// not hold in its query are escaped, not passed on for the browser to
// guess at (FuzzSameOriginURL found "/? " kept as it was).
func TestSameOriginURLEscapesQuery(t *testing.T) {
	base := &url.URL{Scheme: "https", Host: "web--dev--bob.apps.example.com"}
	for raw, want := range map[string]string{
		"/? ":                  "https://web--dev--bob.apps.example.com/?%20",
		"/a?q=x y&z=<1>":       "https://web--dev--bob.apps.example.com/a?q=x%20y&z=%3C1%3E",
		"/a?q=%20&r=é":         "https://web--dev--bob.apps.example.com/a?q=%20&r=%C3%A9",
		"/a?x=1&y=2&x=3":       "https://web--dev--bob.apps.example.com/a?x=1&y=2&x=3",
		"/a?next=/b?c=d;e+f%2": "https://web--dev--bob.apps.example.com/a?next=/b?c=d;e+f%2",
	} {
		if got := sameOriginURL(base, raw); got != want {
			t.Errorf("sameOriginURL(%q) = %q, want %q", raw, got, want)
		}
	}
}
