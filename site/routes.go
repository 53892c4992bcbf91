package site

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

// The dashboard's pages are listed once, in src/routes.json: the app
// picks its page from that list (src/routes.ts), and the server serves
// the app only at those paths (IsPage) and answers 404 everywhere else,
// rather than the app with 200 for any path. Both read the same file, and
// both pass the cases of testdata/route-cases.json.
//
// A path pattern is matched segment by segment on the path as sent
// (still percent-encoded): "{name}" matches one non-empty segment, and
// "@{name}" one that is "@" and more; any other segment matches itself; one trailing slash is allowed after a pattern
// other than "/".

//go:embed src/routes.json
var routesJSON []byte

// pageTable is src/routes.json.
type pageTable struct {
	Pages []struct {
		Page  string   `json:"page"`
		Paths []string `json:"paths"`
	} `json:"pages"`
}

// patterns are the path patterns of every page, split into segments.
var patterns = mustPatterns(routesJSON)

func mustPatterns(b []byte) [][]string {
	ps, err := parsePatterns(b)
	if err != nil {
		panic(err) // the embedded file is checked by the tests
	}
	return ps
}

func parsePatterns(b []byte) ([][]string, error) {
	var t pageTable
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("site: src/routes.json: %w", err)
	}
	var out [][]string
	for _, pg := range t.Pages {
		for _, p := range pg.Paths {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("site: src/routes.json: page %s: path %q must start with /", pg.Page, p)
			}
			out = append(out, strings.Split(p, "/")[1:])
		}
	}
	return out, nil
}

// IsPage reports whether escapedPath (a request's URL.EscapedPath) is a
// page of the dashboard.
func IsPage(escapedPath string) bool {
	if !strings.HasPrefix(escapedPath, "/") {
		return false
	}
	segs := strings.Split(escapedPath, "/")[1:]
	for _, p := range patterns {
		if matchSegments(p, segs) {
			return true
		}
	}
	return false
}

func matchSegments(pattern, segs []string) bool {
	// "/x/" is "/x" with its trailing slash, but "/" is not "" with one.
	if len(segs) == len(pattern)+1 && segs[len(segs)-1] == "" && !(len(pattern) == 1 && pattern[0] == "") {
		segs = segs[:len(segs)-1]
	}
	if len(segs) != len(pattern) {
		return false
	}
	for i, p := range pattern {
		if lit, _, ok := strings.Cut(p, "{"); ok && strings.HasSuffix(p, "}") {
			if !strings.HasPrefix(segs[i], lit) || len(segs[i]) == len(lit) {
				return false
			}
			continue
		}
		if segs[i] != p {
			return false
		}
	}
	return true
}
