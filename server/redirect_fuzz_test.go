package server

import (
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

// redirectBases are origins sameOriginURL sends browsers to: the dashboard
// and app hosts, with and without ports.
var redirectBases = []*url.URL{
	{Scheme: "http", Host: "tether.example.com", Path: "/"},
	{Scheme: "https", Host: "tether.example.com:8443"},
	{Scheme: "https", Host: "web--dev--bob.apps.example.com", Path: "/"},
	{Scheme: "http", Host: "[::1]:3000"},
}

// plainPath is a path that needs no cleaning: it must be kept as it is.
var plainPath = regexp.MustCompile(`^(/[A-Za-z0-9_~-]+)+/?(\?[A-Za-z0-9_=&-]+)?$`)

// FuzzSameOriginURL checks where a query parameter can send a browser
// (the app sign-in's "path"): always to the base's own origin, at a clean
// path that no browser reads as another host, stably (following the
// answer's own path gives the answer again), and to the very path asked
// for when that path was plain.
func FuzzSameOriginURL(f *testing.F) {
	for _, s := range []string{
		"", "/", "/workspaces", "/@bob/dev/apps/web/?x=1&y=2", "/a/b/../c/./d/", "/a?next=//evil.test",
		// Issue 10's open redirects, and their relatives.
		"/.//evil.test/", "/%2e//evil.test", "/a/..//evil.test", "//evil.test", "/\\evil.test", "/\t/evil.test",
		"https://evil.test/", "javascript:alert(1)", "http:evil.test", "/%0a/evil", "/#//evil", "///evil", "/..",
		"\x00/", "/a%2f%2fevil", "/a/%2e%2e/%2e%2e//evil",
	} {
		f.Add(uint8(0), s)
	}
	f.Add(uint8(2), "/__tether/app-auth?tether_auth_code=x")
	f.Add(uint8(3), "/ok")

	f.Fuzz(func(t *testing.T, which uint8, raw string) {
		base := redirectBases[int(which)%len(redirectBases)]
		got := sameOriginURL(base, raw)
		root := base.Scheme + "://" + base.Host + "/"

		if !strings.HasPrefix(got, root) {
			t.Fatalf("sameOriginURL(%q) = %q, not under %s", raw, got, root)
		}
		// What browsers would read differently from Go: backslashes,
		// white space and control characters, a second slash after the
		// host.
		if strings.IndexFunc(got, func(r rune) bool { return r <= 0x20 || r == 0x7f || r == '\\' }) >= 0 {
			t.Fatalf("sameOriginURL(%q) = %q has characters browsers rewrite", raw, got)
		}
		if rest := got[len(root):]; strings.HasPrefix(rest, "/") {
			t.Fatalf("sameOriginURL(%q) = %q starts its path with //", raw, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("sameOriginURL(%q) = %q does not parse: %v", raw, got, err)
		}
		if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil || u.Opaque != "" || u.Fragment != "" {
			t.Fatalf("sameOriginURL(%q) = %q leaves %s", raw, got, root)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("sameOriginURL(%q) = %q has a dot segment", raw, got)
			}
		}
		if c := path.Clean(u.Path); c != strings.TrimSuffix(u.Path, "/") && c != u.Path {
			t.Fatalf("sameOriginURL(%q) = %q: path is not clean (%q)", raw, got, c)
		}
		if again := sameOriginURL(base, u.RequestURI()); again != got {
			t.Fatalf("sameOriginURL(%q) = %q, but following its path %q gives %q", raw, got, u.RequestURI(), again)
		}
		if plainPath.MatchString(raw) && got != root+raw[1:] {
			t.Fatalf("sameOriginURL(%q) = %q, want the path kept", raw, got)
		}
	})
}
