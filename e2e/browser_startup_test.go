package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrowserStartupScript: the workspace row shows how its startup script
// went, and the badge opens the script's output, by keyboard too.
func TestBrowserStartupScript(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	tpl := filepath.Join(t.TempDir(), "scripted.yaml")
	yaml := "name: scripted\nstartup_script: |\n  echo 'fetching dependencies'\n  exit 7\n"
	if err := os.WriteFile(tpl, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	u.Must("templates", "push", "-f", tpl)
	token, agentURL := u.CreateWorkspace("dev", "--template", "scripted")
	here.StartAgent(t, agentURL, token, "XDG_STATE_HOME="+t.TempDir())

	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	badge := `document.querySelector('tr[data-workspace="alice/dev"] details.startup summary')?.textContent?.trim()`
	p.waitText("the startup script's badge", badge, func(s string) bool { return s == "Startup failed (exit 7)" })

	// Tab to the badge and open it with Enter.
	if err := p.eval(`document.querySelector('tr[data-workspace="alice/dev"] details.startup summary').focus()`, nil); err != nil {
		t.Fatal(err)
	}
	p.focusedKeys("\r")
	out := p.waitText("the startup script's output", `document.querySelector('tr[data-workspace="alice/dev"] .startup-output')?.textContent`,
		func(s string) bool { return s != "" })
	if !strings.Contains(out, "fetching dependencies") {
		t.Errorf("the output shows %q, want the script's output", out)
	}
	p.waitContains("where the whole log is", `document.querySelector('tr[data-workspace="alice/dev"] details.startup')?.textContent`, "startup-script.log")
	p.screenshot("startup-script")
}
