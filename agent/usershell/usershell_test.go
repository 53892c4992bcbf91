package usershell

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSetenv(t *testing.T) {
	got := Setenv([]string{"A=1", "B=2", "A=3"}, "A=9", "C=4")
	want := []string{"B=2", "A=9", "C=4"}
	if !slices.Equal(got, want) {
		t.Errorf("Setenv = %q, want %q", got, want)
	}
}

func TestLoginShellSources(t *testing.T) {
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\nnologin:x:1:1::/:\nme:x:1000:1000:Me:/home/me:/usr/bin/fish\n"), 0o600)
	for _, tc := range []struct{ name, want string }{
		{"me", "/usr/bin/fish"},
		{"root", "/bin/bash"},
		{"nologin", ""}, // no shell given
		{"someone", ""}, // a macOS person: not in /etc/passwd
	} {
		if got := passwdShell(passwd, tc.name); got != tc.want {
			t.Errorf("passwdShell(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := passwdShell(filepath.Join(t.TempDir(), "missing"), "me"); got != "" {
		t.Errorf("passwdShell of a missing file = %q", got)
	}

	// dscl . -read /Users/NAME UserShell, as macOS answers it.
	for _, tc := range []struct{ out, want string }{
		{"UserShell: /bin/zsh\n", "/bin/zsh"},
		{"UserShell:\n /Users/me/my tools/fish\n", "/Users/me/my tools/fish"}, // a value with a space, on its own line
		{"UserShell: /usr/local/bin/bash", "/usr/local/bin/bash"},
		{"UserShell: zsh\n", ""},
		{"No such key: UserShell\n", ""},
		{"", ""},
	} {
		if got := parseUserShell(tc.out); got != tc.want {
			t.Errorf("parseUserShell(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func TestCommand(t *testing.T) {
	u := &User{Name: "me", Home: "/nonexistent-home", Shell: "/bin/sh"}
	login := u.Command("")
	if !slices.Equal(login.Args, []string{"-sh"}) || login.Dir != "/" {
		t.Errorf("login shell: args %q dir %q; want -sh in / (home is missing)", login.Args, login.Dir)
	}
	home, _ := os.UserHomeDir()
	u.Home = home
	c := u.Command("echo hi")
	if !slices.Equal(c.Args, []string{"sh", "-c", "echo hi"}) || c.Dir != home {
		t.Errorf("command: args %q dir %q", c.Args, c.Dir)
	}
	if env := u.Environ(); !slices.Contains(env, "HOME="+home) || !slices.Contains(env, "SHELL=/bin/sh") {
		t.Errorf("Environ lacks the user's identity: %q", env)
	}
}

func TestPTYSize(t *testing.T) {
	ptmx, tty, err := OpenPTY(Size{Rows: 30, Cols: 100})
	if err != nil {
		t.Skipf("no PTYs here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := SetSize(ptmx, Size{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	if err := SetSize(ptmx, Size{}); err != nil {
		t.Errorf("a zero size must be ignored: %v", err)
	}
}
