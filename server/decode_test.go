package server

import (
	"strings"
	"testing"

	"github.com/tetherdev/tether"
)

// A body is one JSON object and nothing more (FuzzDecodeJSON found the
// stray '}' and the null).
func TestDecodeJSONOneObject(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"object", `{"name":"dev"}`, ""},
		{"white space around", " \n{\"name\":\"dev\"}\r\n\t ", ""},
		{"stray brace", `{"name":"dev"}}`, "data after the JSON object"},
		{"stray bracket", `{"name":"dev"}]`, "data after the JSON object"},
		{"two objects", `{"name":"dev"}{"name":"x"}`, "data after the JSON object"},
		{"garbage", `{"name":"dev"} x`, "data after the JSON object"},
		{"null", `null`, "must be a JSON object"},
		{"null and a line break", "null\r\n", "must be a JSON object"},
		{"array", `[]`, "wrong type"},
		{"empty", ``, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req tether.CreateWorkspaceRequest
			err := decodeBody("application/json", []byte(tc.body), &req)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			case err != nil && tether.ErrorCode(err) != tether.EINVALID:
				t.Fatalf("code %s, want %s", tether.ErrorCode(err), tether.EINVALID)
			}
		})
	}
}

// The refusal of a wrong Content-Type quotes it, cut short, so that a
// header's control characters or length cannot break the message into
// lines or bloat it (found by FuzzDecodeJSON and FuzzAPIBodies).
func TestDecodeJSONContentTypeMessage(t *testing.T) {
	for _, ct := range []string{"text/plain", "\r", "x\x00y\tz", strings.Repeat("a", 5000)} {
		err := decodeBody(ct, []byte(`{"name":"dev"}`), new(tether.CreateWorkspaceRequest))
		msg := tether.ErrorMessage(err)
		if err == nil || strings.ContainsAny(msg, "\r\n\x00") || len(msg) > 200 || !strings.Contains(msg, "Content-Type") {
			t.Errorf("Content-Type %.20q: %q", ct, msg)
		}
	}
}
