package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether"
)

// BuildVersion describes this binary from its build info: Version (as the
// linker set it, or the module's version for `go install …@vX`), and the
// commit that `go build` records from a checkout.
func BuildVersion() tether.VersionOutput {
	bi, _ := debug.ReadBuildInfo()
	return versionFrom(Version, bi)
}

// versionFrom is BuildVersion with its inputs given; bi may be nil (a
// binary built without module support).
func versionFrom(linked string, bi *debug.BuildInfo) tether.VersionOutput {
	v := tether.VersionOutput{Version: linked, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi == nil {
		return v
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	if v.Version == "" || v.Version == "dev" {
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		} else {
			v.Version = "dev"
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			v.OS = s.Value
		case "GOARCH":
			v.Arch = s.Value
		}
	}
	return v
}

// shortVersion is one line: "v1.2.3 (commit 0123456789ab)", with
// "+modified" when the checkout had changes.
func shortVersion(v tether.VersionOutput) string {
	if v.Commit == "" {
		return v.Version
	}
	c := v.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if v.Modified {
		c += "+modified"
	}
	return fmt.Sprintf("%s (commit %s)", v.Version, c)
}

func versionCommand(env *Env) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Show the version and the commit this binary was built from",
		Args:    cobra.NoArgs,
		PreRunE: func(*cobra.Command, []string) error { return checkOutput(format) },
		RunE: func(cmd *cobra.Command, args []string) error {
			v := BuildVersion()
			if format == "json" {
				return writeJSON(env.Stdout, v)
			}
			commit, when := v.Commit, v.CommitTime
			if commit == "" {
				commit = "unknown (built without version control information)"
			} else if v.Modified {
				commit += " (with uncommitted changes)"
			}
			if when == "" {
				when = "unknown"
			}
			fmt.Fprintf(env.Stdout, "tether %s\n  commit:       %s\n  commit time:  %s\n  go:           %s %s/%s\n",
				v.Version, commit, when, v.GoVersion, v.OS, v.Arch)
			return nil
		},
	}
	outputFlag(cmd, &format)
	return cmd
}
