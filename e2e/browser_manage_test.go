package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/tetherdev/tether/internal/harness"
)

// The dashboard's pages that manage things: workspaces, templates, users,
// the account and its API tokens. Each is driven with the keyboard where a
// person would (dialogs open with Enter, submit with Enter, close with
// Escape and give the focus back) and photographed in light and dark.

// press sends one key (kb.Enter, kb.Escape, kb.Tab …) to whatever has the
// focus.
func (p *tab) press(key string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(key)); err != nil {
		p.fatalf("press %q: %v", key, err)
	}
}

// focus gives the element that sel matches the keyboard focus.
func (p *tab) focus(sel string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS(sel))); err != nil {
		p.fatalf("focus %s: %v", sel, err)
	}
}

// focused describes the focused element: its tag, name and label (a
// button's text; a field's aria-label).
const focused = `(() => {
	const e = document.activeElement;
	if (!e) return "";
	const field = ["INPUT", "SELECT", "TEXTAREA"].includes(e.tagName);
	return (e.tagName + " " + (e.getAttribute("name") || "") + " " + (e.getAttribute("aria-label") || (field ? "" : e.textContent) || "").trim()).trim();
})()`

// focusRing is the focused element's outline, "none" when it has none.
const focusRing = `(() => { const e = document.activeElement; const s = e && getComputedStyle(e); return s ? s.outlineStyle + " " + s.outlineWidth : "none"; })()`

// openDialog is the title of the open dialog, "" when none is open.
const openDialog = `document.querySelector("dialog[open] h2")?.textContent ?? ""`

// colorScheme makes the page prefer dark or light colours.
func (p *tab) colorScheme(scheme string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		p.fatalf("prefer %s colours: %v", scheme, err)
	}
}

// screenshots saves the whole page (not only the part in view) in light and
// in dark colours as artifacts, and leaves the page light.
func (p *tab) screenshots(what string) {
	p.t.Helper()
	// From the top: a page scrolled down (by the focus) comes out of a
	// full-page capture shifted under its sticky top bar.
	if err := p.eval(`(() => { window.scrollTo(0, 0); return true; })()`, new(bool)); err != nil {
		p.fatalf("scroll to the top: %v", err)
	}
	for _, scheme := range []string{"dark", "light"} {
		p.colorScheme(scheme)
		ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		cancel()
		if err != nil {
			p.fatalf("screenshot: %v", err)
		}
		file := filepath.Join(artifactDir(p.t), artifactName(p.t, what+"-"+scheme))
		if err := os.WriteFile(file, img, 0o644); err != nil {
			p.t.Fatal(err)
		}
		p.t.Logf("screenshot of %s (%s): %s", what, scheme, file)
	}
}

// Create a workspace from a template in the dashboard, start its agent with
// the command the dashboard shows, and delete it after a confirmation.
func TestBrowserCreateAndDeleteWorkspace(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	adm.MustInput("name: py\napps: []\n", "templates", "push", "-f", "-")

	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	p.focus(`.page-head .button-primary`)
	p.press(kb.Enter)
	p.waitContains("the new workspace dialog", openDialog, "New workspace")
	if f := p.text(focused); !strings.HasPrefix(f, "INPUT name") {
		t.Errorf("the dialog opened with the focus on %q; want the name field", f)
	}
	if ring := p.text(focusRing); strings.HasPrefix(ring, "none") {
		t.Errorf("the focused field shows no focus ring (%s)", ring)
	}
	p.typeInto(`dialog[open] input[name=name]`, "box1")
	p.waitContains("the template choice", `[...document.querySelectorAll("dialog[open] select option")].map(o => o.value).join(",")`, "py")
	// Keyboard only, in reading order: the name, the template, Cancel,
	// Create.
	for _, step := range []struct{ key, want string }{
		{kb.Tab, "SELECT template"},
		{kb.ArrowDown, "SELECT template"},
		{kb.Tab, "BUTTON  Cancel"},
		{kb.Tab, "BUTTON  Create workspace"},
	} {
		p.press(step.key)
		if f := p.text(focused); f != step.want {
			t.Fatalf("after %q the focus is on %q, want %q", step.key, f, step.want)
		}
	}
	if v := p.text(`document.querySelector("dialog[open] select").value`); v != "py" {
		t.Errorf("the arrow key chose template %q, want py", v)
	}
	p.press(kb.Enter)
	cmd := p.waitContains("the agent command", `document.querySelector("[data-testid=workspace-created] .secret-value")?.textContent ?? ""`, "TETHER_AGENT_TOKEN=")
	p.screenshots("created")

	// The agent starts with what the page shows: the token and the URL of
	// the install one-liner (curl -fsSL URL/install.sh | TETHER_AGENT_TOKEN=…
	// sh), or of the tether agent command.
	token := regexp.MustCompile(`TETHER_AGENT_TOKEN='?([A-Za-z0-9_-]+)`).FindStringSubmatch(cmd)
	agentURL := regexp.MustCompile(`(?:--url |curl -fsSL '?)(https?://[^\s']+?)(?:/install\.sh)?'?(?:\s|$)`).FindStringSubmatch(cmd)
	if token == nil || agentURL == nil {
		t.Fatalf("the dashboard's agent command %q holds no token and URL", cmd)
	}
	here.StartAgent(t, agentURL[1], token[1])
	p.press(kb.Enter) // Done has the focus
	p.waitText("the dialog to close", openDialog, func(s string) bool { return s == "" })
	p.waitContains("the agent to connect", statusBadge("alice/box1"), "Connected")
	if tpl := p.text(`document.querySelector('tr.ws-row[data-workspace="alice/box1"] .ws-meta')?.textContent ?? ""`); !strings.Contains(tpl, "py") {
		t.Errorf("the new workspace's row does not name its template: %q", tpl)
	}
	p.screenshots("workspaces")

	// Escape cancels a deletion and gives the focus back to its button.
	del := `tr.ws-row[data-workspace="alice/box1"] button[aria-label^=Delete]`
	p.focus(del)
	p.press(kb.Enter)
	p.waitContains("the confirmation", openDialog, "Delete workspace?")
	if f := p.text(focused); !strings.Contains(f, "Cancel") {
		t.Errorf("the confirmation opened with the focus on %q; want Cancel", f)
	}
	p.screenshots("delete-confirmation")
	p.press(kb.Escape)
	p.waitText("the confirmation to close", openDialog, func(s string) bool { return s == "" })
	p.waitContains("the focus back on Delete", focused, "Delete workspace alice/box1")
	p.press(kb.Enter)
	p.waitContains("the confirmation again", openDialog, "Delete workspace?")
	p.click(`dialog[open] .button-danger`)
	p.waitText("the row to go", `String(document.querySelectorAll('tr.ws-row[data-workspace="alice/box1"]').length)`, func(s string) bool { return s == "0" })
	if code, body := api(t, "GET", srv.URL+"/api/v2/workspaces/alice/box1", adm.Token(), nil); code != http.StatusNotFound {
		t.Errorf("the deleted workspace: %d %s", code, body)
	}
}

// An admin uploads a bad template, sees the line at fault, fixes it and
// sees the template listed; a member sees the list without the upload.
func TestBrowserUploadTemplate(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	here.Member(t, srv.URL, adm, "bob")

	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	p.click(`nav a[href="/templates"]`)
	p.waitPath("/templates")
	p.waitContains("the empty list", bodyText, "No templates yet")
	p.focus(`.page-head .button-primary`)
	p.press(kb.Enter)
	p.waitContains("the upload dialog", openDialog, "Upload a template")
	p.typeInto(`dialog[open] textarea`, "name: python-dev\napps:\n  - name: web\n    urll: http://127.0.0.1:8080\n")
	p.click(`dialog[open] button[type=submit]`)
	msg := p.waitContains("the server's complaint", `document.querySelector("dialog[open] .alert-error")?.innerText ?? ""`, "line 4")
	if !strings.Contains(msg, "urll") {
		t.Errorf("the error does not name the field: %q", msg)
	}
	p.screenshots("bad-template")
	p.eval(`(() => { const t = document.querySelector("dialog[open] textarea"); t.value = ""; t.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, new(bool))
	p.typeInto(`dialog[open] textarea`, "name: python-dev\napps:\n  - name: web\n    url: http://127.0.0.1:8080\n    share: owner\n")
	p.click(`dialog[open] button[type=submit]`)
	p.waitText("the dialog to close", openDialog, func(s string) bool { return s == "" })
	p.waitContains("the template's row", `document.querySelector('tr[data-template="python-dev"]')?.innerText ?? ""`, "web")
	p.screenshots("templates")
	if out := adm.Must("templates", "list"); !strings.Contains(out, "python-dev") {
		t.Errorf("templates list after the upload:\n%s", out)
	}

	m := b.tab("bob")
	m.signIn(srv.URL, "bob", "bob-password")
	m.navigate(srv.URL + "/templates")
	m.waitContains("the template for a member", bodyText, "python-dev")
	if n := m.text(`String(document.querySelectorAll(".page-head .button-primary").length)`); n != "0" {
		t.Errorf("a member sees an upload button")
	}
	if n := m.text(`String(document.querySelectorAll('nav a[href="/users"]').length)`); n != "0" {
		t.Errorf("a member sees the users page in the menu")
	}
}

// An admin adds a user, makes them admin and member again, suspends and
// unsuspends them, resets their password, and deletes them with their
// workspace.
func TestBrowserAdminManagesUsers(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	here.Admin(t, srv.URL)

	p := b.tab("alice")
	p.signIn(srv.URL, "alice", "correct-horse")
	p.click(`nav a[href="/users"]`)
	p.waitPath("/users")
	p.focus(`.page-head .button-primary`)
	p.press(kb.Enter)
	p.waitContains("the add user dialog", openDialog, "Add a user")
	p.typeInto(`dialog[open] input[name=username]`, "carol")
	p.typeInto(`dialog[open] input[name=email]`, "carol@example.com")
	p.typeInto(`dialog[open] input[name=password]`, "carol-long-password")
	p.press(kb.Enter)
	row := `document.querySelector('tr[data-user="carol"]')?.innerText ?? ""`
	p.waitContains("carol's row", row, "Active")

	carol := here.NewUser(t)
	carol.Must("login", srv.URL, "--username", "carol", "--password", "carol-long-password")
	carol.CreateWorkspace("notes")

	role := `tr[data-user="carol"] select`
	p.eval(`(() => { const s = document.querySelector('`+role+`'); s.value = "admin"; s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, new(bool))
	p.waitContains("the notice", `document.querySelector(".alert-info")?.innerText ?? ""`, "carol is now admin")
	if code, _ := api(t, "GET", srv.URL+"/api/v2/users", carol.Token(), nil); code != http.StatusOK {
		t.Errorf("carol as admin lists users: %d", code)
	}
	p.eval(`(() => { const s = document.querySelector('`+role+`'); s.value = "member"; s.dispatchEvent(new Event("change", {bubbles: true})); return true; })()`, new(bool))
	p.waitContains("the notice", `document.querySelector(".alert-info")?.innerText ?? ""`, "carol is now member")

	p.click(`tr[data-user="carol"] button[aria-label="Suspend carol"]`)
	p.waitContains("the suspend confirmation", openDialog, "Suspend user?")
	p.click(`dialog[open] .button-danger`)
	p.waitContains("carol suspended", row, "Suspended")
	if code, _ := api(t, "GET", srv.URL+"/api/v2/users/me", carol.Token(), nil); code != http.StatusUnauthorized {
		t.Errorf("suspended carol's session: %d", code)
	}
	p.screenshots("users")
	p.click(`tr[data-user="carol"] button[aria-label="Unsuspend carol"]`)
	p.waitContains("carol active", row, "Active")

	p.click(`tr[data-user="carol"] button[aria-label="Reset the password of carol"]`)
	p.waitContains("the reset dialog", openDialog, "Reset password")
	p.typeInto(`dialog[open] input[name=password]`, "a fresh passphrase")
	p.press(kb.Enter)
	p.waitContains("the notice", `document.querySelector(".alert-info")?.innerText ?? ""`, "password was reset")
	carol.Must("login", srv.URL, "--username", "carol", "--password", "a fresh passphrase")

	p.click(`tr[data-user="carol"] button[aria-label="Delete carol"]`)
	p.waitContains("the delete dialog", openDialog, "Delete user?")
	p.click(`dialog[open] .button-danger`)
	p.waitContains("the workspaces question", `document.querySelector("dialog[open] .alert-warning")?.innerText ?? ""`, "notes")
	p.screenshots("delete-user")
	p.click(`dialog[open] input[type=checkbox]`)
	p.click(`dialog[open] .button-danger`)
	p.waitText("carol's row to go", `String(document.querySelectorAll('tr[data-user="carol"]').length)`, func(s string) bool { return s == "0" })
	p.waitContains("the notice", `document.querySelector(".alert-info")?.innerText ?? ""`, "Deleted carol and 1 workspace")
}

// A member changes their password (the current one first) on the account
// page, and makes an API token that is shown once, works with the API, and
// is refused once deleted.
func TestBrowserAccountAndTokens(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	adm := here.Admin(t, srv.URL)
	bob := here.Member(t, srv.URL, adm, "bob")

	p := b.tab("bob")
	p.signIn(srv.URL, "bob", "bob-password")
	p.click(`a.user-name`)
	p.waitPath("/account")

	p.typeInto(`input[name=old_password]`, "not-my-password")
	p.typeInto(`input[name=new_password]`, "bob-new-passphrase")
	p.typeInto(`input[name=confirm_password]`, "bob-new-passphrase")
	p.press(kb.Enter)
	p.waitContains("the wrong current password", `document.querySelector(".panel .alert-error")?.innerText ?? ""`, "current password is not correct")
	p.eval(`(() => { const e = document.querySelector("input[name=old_password]"); e.value = ""; e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, new(bool))
	p.typeInto(`input[name=old_password]`, "bob-password")
	p.press(kb.Enter)
	p.waitContains("the change", `document.querySelector(".panel .alert-info")?.innerText ?? ""`, "password was changed")
	if code, _ := api(t, "GET", srv.URL+"/api/v2/users/me", bob.Token(), nil); code != http.StatusUnauthorized {
		t.Errorf("bob's CLI session after the change: %d, want 401", code)
	}
	bob.Must("login", srv.URL, "--username", "bob", "--password", "bob-new-passphrase")

	p.typeInto(`input[name=token_name]`, "ci")
	p.press(kb.Enter)
	secret := p.waitContains("the new token", `document.querySelector("[data-testid=token-created] .secret-value")?.textContent ?? ""`, "tether_token_")
	p.screenshots("token-created")
	p.press(kb.Escape)
	p.waitText("the dialog to close", openDialog, func(s string) bool { return s == "" })
	p.waitContains("the token's row", `document.querySelector('tr[data-token="ci"]')?.innerText ?? ""`, "never")

	// The token works with curl, and the page never shows it again.
	if curl, err := exec.LookPath("curl"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), harness.CommandTimeout)
		out, err := exec.CommandContext(ctx, curl, "-sf", "-H", "Tether-Session-Token: "+secret, srv.URL+"/api/v2/users/me").Output()
		cancel()
		if err != nil || !strings.Contains(string(out), `"bob"`) {
			t.Errorf("curl with the token: %v %s", err, out)
		}
	} else if code, body := api(t, "GET", srv.URL+"/api/v2/users/me", secret, nil); code != http.StatusOK || !strings.Contains(string(body), `"bob"`) {
		t.Errorf("the API with the token: %d %s", code, body)
	}
	p.reload()
	p.waitText("the token's row, used", `document.querySelector('tr[data-token="ci"] td[data-label="Last used"]')?.innerText ?? ""`,
		func(s string) bool { return s != "" && s != "never" })
	if strings.Contains(p.text(`document.documentElement.outerHTML`), secret) {
		t.Errorf("the account page shows the token again")
	}
	p.screenshots("account")

	p.click(`button[aria-label="Delete token ci"]`)
	p.waitContains("the delete confirmation", openDialog, "Delete API token?")
	p.click(`dialog[open] .button-danger`)
	p.waitContains("no tokens", bodyText, "You have no API tokens")
	if code, body := api(t, "GET", srv.URL+"/api/v2/users/me", secret, nil); code != http.StatusUnauthorized {
		t.Errorf("the deleted token: %d %s, want 401", code, body)
	}
}
