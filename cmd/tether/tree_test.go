package main

// Tests over the whole command tree, so that a command or flag added
// later is held to the same rules: which environment variable sets each
// flag, and what help shows as each flag's value.

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tetherdev/tether/cli"
	"github.com/tetherdev/tether/cli/option"
)

// The rule of README "Environment variables": the services' flags and the
// CLI's global ones are TETHER_<FLAG>; the agent's are scoped to it, as
// every other command's variables are (TETHER_<COMMAND>_<FLAG>).
var (
	// deployments share TETHER_<FLAG>: a server and a workspace proxy run
	// apart, and --access-url means the same to each.
	deployments = map[string]bool{"tether server": true, "tether wsproxy server": true}
	globals     = map[string]bool{"url": true, "session-token": true, "config-dir": true}
)

func tree() *cobra.Command {
	return command(&cli.Env{Getenv: func(string) string { return "" }})
}

// wantEnv returns the variable the rule gives flag f of the command at
// path, and whether the rule requires it ("" and false: it may have
// TETHER_<COMMAND>_<FLAG> or none).
func wantEnv(path string, f *pflag.Flag) (string, bool) {
	name := strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
	switch {
	case f.Name == "help" || f.Name == "version" && path == "tether":
		return "", true
	case f.Name == "yes" || strings.Contains(f.Name, "password"):
		return "", true // secrets and confirmations have none
	case path == "tether" && globals[f.Name]:
		return "TETHER_" + name, true
	case deployments[path]:
		return "TETHER_" + name, true
	case path == "tether agent":
		return "TETHER_AGENT_" + name, true
	}
	return "", false
}

func TestEnvironmentVariablesFollowTheRule(t *testing.T) {
	users := map[string][]string{} // variable → the commands that read it
	option.Visit(tree(), func(owner *cobra.Command, f *pflag.Flag) {
		path := owner.CommandPath()
		got := option.EnvName(owner, f)
		want, required := wantEnv(path, f)
		scoped := "TETHER_" + strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(strings.TrimPrefix(path, "tether ")+" "+f.Name))
		switch {
		case required && got != want:
			t.Errorf("%s --%s: variable %q, want %q", path, f.Name, got, want)
		case !required && got != "" && got != scoped:
			t.Errorf("%s --%s: variable %q, want none or %q (scoped to the command)", path, f.Name, got, scoped)
		}
		if got != "" {
			users[got] = append(users[got], path)
		}
	})
	for env, paths := range users {
		shared := 0
		for _, p := range paths {
			if !deployments[p] {
				shared++
			}
		}
		if len(paths) > 1 && shared > 0 {
			t.Errorf("$%s is read by %s: a variable meant for one command would change another", env, strings.Join(paths, ", "))
		}
	}
	// The variables the issue found leaking, and the ones scripts use.
	for env, want := range map[string]string{
		"TETHER_LOG_LEVEL":   "tether server, tether wsproxy server",
		"TETHER_ACCESS_URL":  "tether server, tether wsproxy server",
		"TETHER_AGENT_TOKEN": "tether agent",
		"TETHER_AGENT_URL":   "tether agent",
		"TETHER_URL":         "tether",
		"TETHER_USERNAME":    "",
		"TETHER_YES":         "",
	} {
		got := strings.Join(users[env], ", ")
		if got != want {
			t.Errorf("$%s is read by %q, want %q", env, got, want)
		}
	}
}

// TestEnvironmentVariablesDoNotLeak runs each command's environment step
// with every other command's variables set: none may change a flag.
func TestEnvironmentVariablesDoNotLeak(t *testing.T) {
	root := tree()
	type setting struct {
		owner string
		value string
	}
	vars := map[string]setting{}
	option.Visit(root, func(owner *cobra.Command, f *pflag.Flag) {
		if env := option.EnvName(owner, f); env != "" {
			v := f.DefValue
			if v == "" || v == "[]" {
				v = "x"
			}
			vars[env] = setting{owner.CommandPath(), v}
		}
	})
	// What the issue saw leak, whether or not anything declares it now.
	for _, env := range []string{"TETHER_USERNAME", "TETHER_YES", "TETHER_PASSWORD", "TETHER_EMAIL", "TETHER_ROLE", "TETHER_OUTPUT", "TETHER_NUM", "TETHER_TEMPLATE"} {
		if _, ok := vars[env]; !ok {
			vars[env] = setting{"nobody", "x"}
		}
	}
	vars["TETHER_LOG_LEVEL"] = setting{"tether server", "debug"}
	var walk func(*cobra.Command)
	walk = func(cmd *cobra.Command) {
		for _, c := range cmd.Commands() {
			walk(c)
		}
		path := cmd.CommandPath()
		getenv := func(env string) string {
			s, ok := vars[env]
			if !ok || s.owner == path || s.owner == "tether" || deployments[s.owner] && deployments[path] {
				return "" // its own, or a global one
			}
			return s.value
		}
		if err := cmd.ParseFlags(nil); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := option.Apply(cmd, getenv); err != nil {
			t.Errorf("%s: another command's variable reached it: %v", path, err)
			return
		}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Changed {
				t.Errorf("%s --%s was set by another command's variable $%s", path, f.Name, option.EnvName(cmd, f))
			}
		})
	}
	walk(root)
}

// placeholder is a value name help may show instead of the type: FILE,
// URL, admin|member.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// TestFlagValueNames: pflag shows a back-quoted word of a flag's usage as
// the flag's value ("--session-token tether login"), so no usage may quote
// a word that is not a value name.
func TestFlagValueNames(t *testing.T) {
	option.Visit(tree(), func(owner *cobra.Command, f *pflag.Flag) {
		name, _ := pflag.UnquoteUsage(f)
		typ, _ := pflag.UnquoteUsage(&pflag.Flag{Value: f.Value})
		if name != typ && (typ == "" || !placeholder.MatchString(name)) {
			t.Errorf("%s --%s: help shows its value as %q, not its type %q (usage %q)", owner.CommandPath(), f.Name, name, typ, f.Usage)
		}
	})
}
