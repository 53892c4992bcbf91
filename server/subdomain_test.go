package server

import "testing"

// /__tether/ on an app host is the server's in every spelling an app
// could clean to it, the directory itself included (FuzzAppHost found
// "//__tether/" and "/a/../__tether/" going to the app).
func TestIsReservedAppPath(t *testing.T) {
	for _, tc := range []struct {
		path     string
		reserved bool
	}{
		{"/__tether/app-auth", true},
		{"/__tether/", true},
		{"/__tether", true},
		{"//__tether/", true},
		{"/a/../__tether/", true},
		{"/./__tether/x", true},
		{"/__tether/../x", true},
		{"/", false},
		{"/__tetherx", false},
		{"/__TETHER/", false},
		{"/app/__tether/", false},
	} {
		if got := isReservedAppPath(tc.path); got != tc.reserved {
			t.Errorf("isReservedAppPath(%q) = %v, want %v", tc.path, got, tc.reserved)
		}
	}
}
