package cli

import (
	"strings"
	"testing"
)

// A template file is one YAML document: a second one, which push would
// silently ignore, is refused (found while writing FuzzReadTemplate).
func TestReadTemplateOneDocument(t *testing.T) {
	for _, tc := range []struct {
		name, file, wantErr string
	}{
		{"one", "name: a\n", ""},
		{"one with start marker", "---\nname: a\n", ""},
		{"one with end marker", "name: a\n...\n", ""},
		{"two", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"second empty", "name: a\n---\n", "more than one YAML document"},
		{"second invalid", "name: a\n---\n: [\n", "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readTemplate("-", strings.NewReader(tc.file))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
