package password

import (
	"strings"
	"testing"

	"github.com/tetherdev/tether"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCheck(t *testing.T) {
	tests := []struct {
		name, pw string
		want     string // in the error; "" for accepted
	}{
		{"short", "abc-xyz", "at least 8 characters"},
		{"eight bytes, fewer characters", "ééééé", "at least 8 characters"},
		{"too long for bcrypt", strings.Repeat("horse ", 13), "longer than 72 bytes"},
		{"password", "password", "most common"},
		{"capitalized", "Password", "most common"},
		{"with digits and a symbol", "Password123!", "most common"},
		{"digits in front", "2024dragon", "most common"},
		{"symbols for letters", "P@ssw0rd", "most common"},
		{"symbols for letters and a suffix", "p@$$w0rd1", "most common"},
		{"a one for an l", "1etmein99", "most common"},
		{"iloveyou", "iloveyou", "most common"},
		{"walk", "1qaz2wsx", "most common"},
		{"12345678", "12345678", "most common"},
		{"digits backwards", "98765432", "simple pattern"},
		{"keyboard row", "asdfghjk", "most common"},
		{"keyboard row part", "wertyuio", "simple pattern"},
		{"two runs", "abcd1234", "most common"},
		{"two other runs", "lmnop789", "simple pattern"},
		{"one character", "zzzzzzzzzz", "simple pattern"},
		{"repeated unit", "xyzxyzxyz", "simple pattern"},
		{"repeated word", "goatgoat", "simple pattern"},
		{"username", "alice-smith", "too close"},
		{"username with digits", "alice-smith2024", "too close"},
		{"email", "alice@example.com", "too close"},
		{"service", "Tether2024!", "too close"},
		{"passphrase", "correct-horse", ""},
		{"passphrase with spaces", "correct horse battery staple", ""},
		{"a test suite's", "bob-password", ""},
		{"random", "x7#kLm2$qP", ""},
		{"non-ASCII", "日本語のパスワード", ""},
		{"72 bytes exactly", strings.Repeat("abcdefghX", 8), ""},
		{"contains a common word", "monkey-island-sunset", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.pw, "alice-smith", "alice@example.com")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check(%q) = %v, want nil", tc.pw, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Check(%q) = %v, want an error about %q", tc.pw, err, tc.want)
			case err != nil && tether.ErrorCode(err) != tether.EINVALID:
				t.Errorf("Check(%q) has code %q, want %q", tc.pw, tether.ErrorCode(err), tether.EINVALID)
			}
		})
	}
}

// Every entry of the list is refused (each is a real password or the stem
// of one), and the list is free of entries too short to act as stems.
func TestCommonList(t *testing.T) {
	n := 0
	for w := range common() {
		n++
		if len(w) < 4 || w != strings.ToLower(w) {
			t.Errorf("list entry %q: entries are lowercase and at least 4 bytes", w)
		}
		pw := w
		for len(pw) < MinLength {
			pw += "1"
		}
		if Check(pw, "someone", "someone@example.com") == nil {
			t.Errorf("%q (from list entry %q) was accepted", pw, w)
		}
	}
	if n < 1000 {
		t.Errorf("the list has %d entries; it should have the most common thousand or more", n)
	}
}
