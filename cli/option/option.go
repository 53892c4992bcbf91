// Package option gives every command-line flag an environment variable, so
// that each setting is declared once: its flag, default and help in one
// place, its variable derived from the flag's name (TETHER_ + upper snake
// case) unless the declaration names another.
package option

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envAnnotation overrides the derived variable name of a flag.
const envAnnotation = "tether_env"

// EnvName returns the environment variable of flag f.
func EnvName(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) > 0 {
		return v[0]
	}
	return "TETHER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
}

// SetEnv gives the named flag of fs a variable other than the derived one.
func SetEnv(fs *pflag.FlagSet, flag, env string) {
	if err := fs.SetAnnotation(flag, envAnnotation, []string{env}); err != nil {
		panic(fmt.Sprintf("option: %v", err)) // a programming error: the flag is not declared
	}
}

// Document appends each flag's variable to its help text. Call it once on
// the root after all commands are added.
func Document(root *cobra.Command) {
	visit(root, func(f *pflag.Flag) {
		if f.Name == "help" || strings.Contains(f.Usage, "[$") {
			return
		}
		f.Usage += " [$" + EnvName(f) + "]"
	})
}

// Apply sets every flag of cmd that was not given on the command line from
// its environment variable, if that is set. It runs before the command, so
// a bad value in the environment fails as a bad flag would, naming both.
func Apply(cmd *cobra.Command, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var err error
	apply := func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		env := EnvName(f)
		v, ok := lookup(getenv, env)
		if !ok {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("invalid value %q in $%s for --%s: %v", v, env, f.Name, serr)
			return
		}
		f.Changed = true
	}
	cmd.Flags().VisitAll(apply)
	cmd.InheritedFlags().VisitAll(apply)
	return err
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func visit(cmd *cobra.Command, fn func(*pflag.Flag)) {
	cmd.LocalFlags().VisitAll(fn)
	cmd.PersistentFlags().VisitAll(fn)
	for _, c := range cmd.Commands() {
		visit(c, fn)
	}
}
