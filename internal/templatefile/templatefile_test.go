package templatefile

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"good", "name: py\napps:\n  - name: web\n    url: http://127.0.0.1:8080\n    share: owner\n", ""},
		{"empty", "", "is empty"},
		{"unknown field, with its line", "name: py\nappz: []\n", "line 2: field appz not found"},
		{"bad YAML, with its line", "name: py\napps:\n  - name: [\n", "line 3"},
		{"two documents", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"invalid name", "name: Py\n", "template f.yaml:"},
		{"too large", "name: " + strings.Repeat("a", MaxSize), "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := Parse("f.yaml", []byte(tc.in))
			if tc.wantErr == "" {
				if err != nil || req.Name != "py" || len(req.Apps) != 1 {
					t.Fatalf("Parse = %+v, %v", req, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Parse error %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}
