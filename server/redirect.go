package server

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// sameOriginURL returns where to send a browser that asked to go to raw (a
// path from a query parameter) on base's origin: raw resolved against base
// if it names a path there, base's root otherwise. The answer is always an
// absolute URL on base's origin, so that nothing in raw can make a browser
// read it as another host ("//evil", "/\evil", "/\t/evil", "/.//evil",
// "https://evil", "javascript:"): browsers strip tabs and newlines from
// URLs and read backslashes as slashes, so those are refused outright.
func sameOriginURL(base *url.URL, raw string) string {
	root := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: "/"}
	if raw == "" || strings.ContainsAny(raw, "\\") || strings.IndexFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return root.String()
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return root.String()
	}
	clean := path.Clean(u.Path)
	if strings.HasSuffix(u.Path, "/") && clean != "/" {
		clean += "/"
	}
	out := &url.URL{Scheme: base.Scheme, Host: base.Host, Path: clean, RawQuery: escapeQuery(u.RawQuery)}
	if r := out.String(); strings.HasPrefix(r, root.String()) {
		return r
	}
	return root.String()
}

// escapeQuery percent-encodes what a URL's query may not hold (spaces,
// quotes, angle brackets, bytes outside ASCII...) and keeps the rest,
// escapes included, as it was: the parameters' order and spelling are the
// page's business.
func escapeQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
