package option_test

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/tetherdev/tether/cli/option"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The rule over the whole command tree is checked in cmd/tether, where
// the tree is whole; these check the mechanism.

func TestApply(t *testing.T) {
	var url, token, name string
	var n int
	var yes bool
	root := &cobra.Command{Use: "tether"}
	svc := &cobra.Command{Use: "svc", RunE: func(*cobra.Command, []string) error { return nil }}
	svc.Flags().StringVar(&url, "access-url", "", "")
	svc.Flags().IntVar(&n, "count", 1, "")
	svc.Flags().BoolVar(&yes, "yes", false, "")
	option.Deployment(svc)
	cmd := &cobra.Command{Use: "cmd", RunE: func(*cobra.Command, []string) error { return nil }}
	cmd.Flags().StringVar(&token, "token", "", "")
	cmd.Flags().StringVar(&name, "name", "", "")
	option.Scoped(cmd, "token")
	root.AddCommand(svc, cmd)
	env := map[string]string{"TETHER_ACCESS_URL": "https://env", "TETHER_COUNT": "5", "TETHER_YES": "true",
		"TETHER_CMD_TOKEN": "t", "TETHER_TOKEN": "wrong", "TETHER_NAME": "wrong", "TETHER_CMD_NAME": "wrong"}
	getenv := func(k string) string { return env[k] }
	if err := svc.ParseFlags([]string{"--count", "7"}); err != nil {
		t.Fatal(err)
	}
	if err := option.Apply(svc, getenv); err != nil {
		t.Fatal(err)
	}
	if url != "https://env" || n != 7 || yes {
		t.Errorf("got url=%q count=%d yes=%v; the flag must win over the environment, and --yes has no variable", url, n, yes)
	}
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := option.Apply(cmd, getenv); err != nil {
		t.Fatal(err)
	}
	if token != "t" || name != "" {
		t.Errorf("got token=%q name=%q; want the scoped variable for --token, and none for --name", token, name)
	}
	env["TETHER_COUNT"] = "many"
	svc.Flags().Lookup("count").Changed = false
	err := option.Apply(svc, getenv)
	if err == nil || !strings.Contains(err.Error(), "$TETHER_COUNT") {
		t.Errorf("bad value in the environment: %v", err)
	}
}
