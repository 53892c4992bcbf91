package usershell

import (
	"os"
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
