// Package option decides which environment variable, if any, sets each
// command-line flag, so that a variable meant for one command never
// changes another. The rule (README "Environment variables"):
//
//   - Deployment settings, the flags of a long-running service (`tether
//     server`, `tether wsproxy server`) and the CLI's global flags, have
//     TETHER_ + the flag in upper snake case: --access-url is
//     TETHER_ACCESS_URL.
//   - Any other flag has a variable only where it is declared scoped, and
//     then the variable names its command: TETHER_<COMMAND>_<FLAG>, such as
//     TETHER_AGENT_TOKEN for `tether agent --token` or
//     TETHER_USERS_CREATE_ROLE for `tether users create --role`.
//   - Passwords and confirmations (--yes) have none, whatever the
//     declaration: a secret in the environment leaks into every child
//     process, and a confirmation skipped by the environment is no
//     confirmation.
//
// A flag is declared once, with pflag, its default and help together; the
// command or the flag then carries its scope as an annotation, so that a
// flag added later to a deployment command gets its variable too.
package option

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Annotations carry the scope of a command's flags (on the command) or of
// one flag (on the flag).
const (
	// scopeAnnotation, on a command, gives all its flags a variable:
	// scopeDeployment (TETHER_<FLAG>) or scopeCommand
	// (TETHER_<COMMAND>_<FLAG>).
	scopeAnnotation = "tether_env_scope"
	scopeDeployment = "deployment"
	scopeCommand    = "command"
	// envAnnotation, on a flag, names its variable outright (a global
	// flag's), or is empty for none.
	envAnnotation = "tether_env"
	// scopedAnnotation, on a flag, gives it TETHER_<COMMAND>_<FLAG>; the
	// name is derived when asked for, since a command learns its path
	// only when it is added to its parent.
	scopedAnnotation = "tether_env_scoped"
)

// Deployment gives every flag of cmd, a long-running service, the variable
// TETHER_<FLAG>, including flags added to cmd later.
func Deployment(cmd *cobra.Command) { annotate(cmd, scopeDeployment) }

// Scoped gives the named flags of cmd the variable TETHER_<COMMAND>_<FLAG>,
// where COMMAND is cmd's path below the root ("users create" is
// USERS_CREATE); with no names, every flag of cmd, including flags added
// later. The flags must be declared already.
func Scoped(cmd *cobra.Command, flags ...string) {
	if len(flags) == 0 {
		annotate(cmd, scopeCommand)
		return
	}
	for _, name := range flags {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			panic(fmt.Sprintf("option: %s has no flag --%s", cmd.Name(), name)) // a programming error
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[scopedAnnotation] = []string{"true"}
	}
}

// Global gives the named persistent flags of the root command cmd the
// variable TETHER_<FLAG>; every command inherits them, and so their
// variables.
func Global(cmd *cobra.Command, flags ...string) {
	for _, name := range flags {
		f := cmd.PersistentFlags().Lookup(name)
		if f == nil {
			panic(fmt.Sprintf("option: %s has no persistent flag --%s", cmd.CommandPath(), name)) // a programming error
		}
		setAnnotation(f, "TETHER_"+snake(name))
	}
}

// SetEnv gives the named flag of fs the variable env, or none if env is "".
// Prefer Deployment, Scoped and Global, which follow the rule.
func SetEnv(fs *pflag.FlagSet, flag, env string) {
	f := fs.Lookup(flag)
	if f == nil {
		panic(fmt.Sprintf("option: no flag --%s", flag)) // a programming error
	}
	setAnnotation(f, env)
}

// EnvName returns the environment variable of flag f, declared by command
// owner, or "" when it has none.
func EnvName(owner *cobra.Command, f *pflag.Flag) string {
	if f.Name == "help" || Secret(f.Name) {
		return ""
	}
	if v, ok := f.Annotations[envAnnotation]; ok {
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	if _, ok := f.Annotations[scopedAnnotation]; ok {
		return scopedName(owner, f.Name)
	}
	switch owner.Annotations[scopeAnnotation] {
	case scopeDeployment:
		return "TETHER_" + snake(f.Name)
	case scopeCommand:
		return scopedName(owner, f.Name)
	}
	return ""
}

// Secret reports whether the flag called name must never be read from the
// environment: a password, or a confirmation.
func Secret(name string) bool {
	return name == "yes" || strings.Contains(name, "password")
}

// Document appends each flag's variable to its help text. Call it once on
// the root after all commands are added.
func Document(root *cobra.Command) {
	Visit(root, func(owner *cobra.Command, f *pflag.Flag) {
		env := EnvName(owner, f)
		if env == "" || strings.Contains(f.Usage, "[$") {
			return
		}
		f.Usage += " [$" + env + "]"
	})
}

// Apply sets every flag of cmd that was not given on the command line, and
// has a variable, from that variable if it is set. It runs before the
// command, so a bad value in the environment fails as a bad flag would,
// naming both.
func Apply(cmd *cobra.Command, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var err error
	apply := func(owner func(*pflag.Flag) *cobra.Command) func(*pflag.Flag) {
		return func(f *pflag.Flag) {
			if err != nil || f.Changed {
				return
			}
			env := EnvName(owner(f), f)
			if env == "" {
				return
			}
			v := getenv(env)
			if v == "" {
				return
			}
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("invalid value %q in $%s for --%s: %v", v, env, f.Name, serr)
				return
			}
			f.Changed = true
		}
	}
	cmd.LocalFlags().VisitAll(apply(func(*pflag.Flag) *cobra.Command { return cmd }))
	cmd.InheritedFlags().VisitAll(apply(func(f *pflag.Flag) *cobra.Command { return declarer(cmd, f.Name) }))
	return err
}

// Visit calls fn for each flag declared in the tree under root, with the
// command that declares it. Inherited flags are visited once, with the
// command that declares them persistent.
func Visit(root *cobra.Command, fn func(owner *cobra.Command, f *pflag.Flag)) {
	seen := map[*pflag.Flag]bool{}
	var visit func(*cobra.Command)
	visit = func(cmd *cobra.Command) {
		each := func(f *pflag.Flag) {
			if !seen[f] {
				seen[f] = true
				fn(cmd, f)
			}
		}
		cmd.PersistentFlags().VisitAll(each)
		cmd.LocalNonPersistentFlags().VisitAll(each)
		for _, c := range cmd.Commands() {
			visit(c)
		}
	}
	visit(root)
}

// declarer returns the ancestor of cmd that declares the persistent flag
// called name, or cmd when none does.
func declarer(cmd *cobra.Command, name string) *cobra.Command {
	for p := cmd.Parent(); p != nil; p = p.Parent() {
		if p.PersistentFlags().Lookup(name) != nil {
			return p
		}
	}
	return cmd
}

// scopedName is TETHER_<COMMAND>_<FLAG> for a flag of cmd.
func scopedName(cmd *cobra.Command, flag string) string {
	path := strings.Fields(cmd.CommandPath())
	if len(path) > 0 {
		path = path[1:] // the root's name is the binary's
	}
	return "TETHER_" + snake(strings.Join(append(path, flag), "_"))
}

// snake turns a flag or command name into upper snake case.
func snake(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(s))
}

func annotate(cmd *cobra.Command, scope string) {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[scopeAnnotation] = scope
}

func setAnnotation(f *pflag.Flag, env string) {
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	if env == "" {
		f.Annotations[envAnnotation] = nil
		return
	}
	f.Annotations[envAnnotation] = []string{env}
}
