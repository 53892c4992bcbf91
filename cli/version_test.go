package cli

import (
	"runtime/debug"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name        string
		linked      string
		bi          *debug.BuildInfo
		wantVersion string
		wantCommit  string
		wantShort   string
	}{
		{"no build info", "dev", nil, "dev", "", "dev"},
		{"built without VCS", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", "", "dev"},
		{"go install at a version", "dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0", "", "v1.4.0"},
		{"from a checkout", "dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "dev", "0123456789abcdef0123", "dev (commit 0123456789ab+modified)"},
		{"the linker's version wins", "v2.0.0", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}, Settings: vcs}, "v2.0.0", "0123456789abcdef0123", "v2.0.0 (commit 0123456789ab+modified)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := versionFrom(tc.linked, tc.bi)
			if v.Version != tc.wantVersion || v.Commit != tc.wantCommit || shortVersion(v) != tc.wantShort || v.GoVersion == "" || v.OS == "" {
				t.Errorf("got %+v (%q), want version %q commit %q (%q)", v, shortVersion(v), tc.wantVersion, tc.wantCommit, tc.wantShort)
			}
			if tc.wantCommit != "" && (v.CommitTime != "2026-12-01T10:00:00Z" || !v.Modified) {
				t.Errorf("commit time and modified not read: %+v", v)
			}
		})
	}
}
