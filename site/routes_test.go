package site

import (
	"encoding/json"
	"os"
	"testing"
)

// TestIsPage runs the cases that src/routes.test.ts runs too, so that the
// server serves the app exactly where the app has a page.
func TestIsPage(t *testing.T) {
	b, err := os.ReadFile("testdata/route-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Path  string `json:"path"`
		Route struct {
			Page string `json:"page"`
		} `json:"route"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if got, want := IsPage(c.Path), c.Route.Page != "notfound"; got != want {
			t.Errorf("IsPage(%q) = %v, want %v (page %s)", c.Path, got, want, c.Route.Page)
		}
	}
}

func TestParsePatterns(t *testing.T) {
	if _, err := parsePatterns(routesJSON); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePatterns([]byte(`{"pages":[{"page":"x","paths":["x"]}]}`)); err == nil {
		t.Error("a path without its leading slash was accepted")
	}
}
