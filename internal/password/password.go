// Package password decides whether a new password may be used, as NIST SP
// 800-63B (section 5.1.1.2) advises: at least MinLength characters, at most
// what bcrypt reads (MaxBytes, so that long passphrases work), and not one
// that attackers try first: a common password, a keyboard or number run, a
// repetition, or the name of the service or of the account. There are no
// composition rules (a digit, a capital, a symbol): they make passwords
// harder to remember, not to guess.
package password

import (
	_ "embed"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/tetherdev/tether"
)

// Length limits. bcrypt ignores what follows its first 72 bytes, so a
// longer password would only seem stronger than it is.
const (
	MinLength = 8  // characters
	MaxBytes  = 72 // bytes of UTF-8
)

//go:embed common.txt
var commonText string

// common is the set of common passwords and stems, parsed on first use
// (every tether command links the server, but few check passwords).
var common = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(commonText, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			m[line] = true
		}
	}
	return m
})

// service is the name of this service, which NIST counts among the words
// specific to the context.
const service = "tether"

const advice = "choose another, such as a few unrelated words"

// Check returns nil if pw may be the password of the account with the given
// username and email address, or an EINVALID *tether.Error that says why
// not and what to do.
func Check(pw, username, email string) error {
	switch {
	case utf8.RuneCountInString(pw) < MinLength:
		return tether.Errorf(tether.EINVALID, "password must be at least %d characters: %s", MinLength, advice)
	case len(pw) > MaxBytes:
		return tether.Errorf(tether.EINVALID, "password is longer than %d bytes, all that bcrypt (which stores it) reads: choose a shorter one", MaxBytes)
	}
	lower := strings.ToLower(pw)
	context := map[string]bool{service: true}
	for _, w := range []string{username, email, localPart(email)} {
		if w = strings.ToLower(w); len(w) >= 3 {
			context[w] = true
		}
	}
	for _, c := range candidates(lower) {
		if context[c] {
			return tether.Errorf(tether.EINVALID, "password is too close to your username, your email address or the name of this service: %s", advice)
		}
		if len(c) >= 4 && common()[c] {
			return tether.Errorf(tether.EINVALID, "password is one of the most common ones, which attackers try first: %s", advice)
		}
	}
	if simplePattern(lower) {
		return tether.Errorf(tether.EINVALID, "password is a simple pattern (a run of keys, letters or digits, or a repetition), which attackers try first: %s", advice)
	}
	return nil
}

func localPart(email string) string {
	local, _, _ := strings.Cut(email, "@")
	return local
}

// candidates are the forms of a lowercase password to look up: itself and
// its cores without some of the digits and symbols around it
// ("2024dragon!!" is "dragon", "88888811" is "888888"), each also with the
// usual symbols read as letters ("p@ssw0rd" is "password").
func candidates(pw string) []string {
	r := []rune(pw)
	n := len(r)
	var out []string
	for i := 0; i <= n; i++ {
		if i > 0 && !decoration(r[i-1]) {
			break
		}
		for j := n; j >= i; j-- {
			if j < n && !decoration(r[j]) {
				break
			}
			core := string(r[i:j])
			out = append(out, core, unleet(core, 'i'), unleet(core, 'l'))
		}
	}
	return out
}

// decoration is what people put around a word to pass composition rules:
// digits, punctuation, symbols and spaces.
func decoration(r rune) bool {
	return unicode.IsDigit(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || unicode.IsSpace(r)
}

// unleet reads the symbols that stand for letters as those letters; one
// stands for i or for l, as given.
func unleet(s string, one rune) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '@', '4':
			return 'a'
		case '0':
			return 'o'
		case '3':
			return 'e'
		case '$', '5':
			return 's'
		case '7', '+':
			return 't'
		case '1', '!', '|':
			return one
		}
		return r
	}, s)
}

// runs are sequences that people type as passwords, forwards or backwards,
// in whole or in part: the alphabet, the digits, keyboard rows (QWERTY,
// QWERTZ, AZERTY) and the columns of a QWERTY keyboard.
var runs = []string{
	"abcdefghijklmnopqrstuvwxyz",
	"01234567890",
	"qwertyuiop", "asdfghjkl", "zxcvbnm",
	"qwertzuiop", "yxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn",
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
	"qazwsxedcrfvtgbyhnujmikolp",
}

// simplePattern reports whether s is a repetition of up to four characters
// ("aaaaaaaa", "abcabcabc", "passpass"), or at most two pieces of runs of
// three or more ("12345678", "qwertyui", "abcd1234", "zxcvbnm123").
func simplePattern(s string) bool {
	n := len(s)
	for unit := 1; unit <= 4 && unit <= n/2; unit++ {
		if n%unit == 0 && strings.Repeat(s[:unit], n/unit) == s {
			return true
		}
	}
	if isRun(s) {
		return true
	}
	for i := 3; i <= n-3; i++ {
		if isRun(s[:i]) && isRun(s[i:]) {
			return true
		}
	}
	return false
}

// isRun reports whether s is part of one of the runs, forwards or
// backwards.
func isRun(s string) bool {
	for _, r := range runs {
		if strings.Contains(r, s) || strings.Contains(reverse(r), s) {
			return true
		}
	}
	return false
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}
