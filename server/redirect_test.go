package server

import (
	"net/url"
	"testing"
)

// TestSameOriginURL: whatever a redirect parameter says, the browser is
// sent to a page of the same origin, normalized.
func TestSameOriginURL(t *testing.T) {
	base, _ := url.Parse("https://web--dev--bob.apps.example.com:8443/")
	const root = "https://web--dev--bob.apps.example.com:8443/"
	tests := []struct{ raw, want string }{
		{"", root},
		{"/", root},
		{"/notebooks/a?x=1&y=%2F", root + "notebooks/a?x=1&y=%2F"},
		{"/a/b/", root + "a/b/"},
		{"/a/./b/../c", root + "a/c"},
		{"/a%20b", root + "a%20b"},
		{"//evil.example/", root},
		{"/.//evil.example/", root + "evil.example/"},
		{"/%2e//evil.example/", root + "evil.example/"},
		{"/a/..//evil.example/", root + "evil.example/"},
		{"/\\evil.example/", root},
		{"\\\\evil.example/", root},
		{"/\t/evil.example/", root},
		{"/\n/evil.example/", root},
		{"/\r\n/evil.example/", root},
		{"\t//evil.example/", root},
		{"https://evil.example/", root},
		{"https:evil.example", root},
		{"//user@evil.example/", root},
		{"javascript:alert(1)", root},
		{"relative/path", root},
		{"/\x00/evil.example", root},
		{"/\x7f", root},
	}
	for _, tc := range tests {
		got := sameOriginURL(base, tc.raw)
		if got != tc.want {
			t.Errorf("sameOriginURL(%q) = %q, want %q", tc.raw, got, tc.want)
		}
		if u, err := url.Parse(got); err != nil || u.Scheme != base.Scheme || u.Host != base.Host {
			t.Errorf("sameOriginURL(%q) = %q leaves the origin", tc.raw, got)
		}
	}
}
