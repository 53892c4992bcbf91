package e2e

// Browser tests: the dashboard, the web terminal and web apps, as a person
// uses them, in headless Chromium against the real binary. They skip
// without Chromium (except in CI) and leave screenshots in $TETHER_ARTIFACTS.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// statusBadge is the expression of a workspace row's status badge text.
func statusBadge(workspace string) string {
	return fmt.Sprintf(`document.querySelector('tr.ws-row[data-workspace=%s] td[data-label=Status] .badge')?.textContent?.trim()`,
		jsString(workspace))
}

// TestBrowserDashboard signs in (a wrong password first), watches a
// workspace's agent status change live on the dashboard, and opens the
// health page.
func TestBrowserDashboard(t *testing.T) {
	b := newBrowser(t)
	srv := here.StartServer(t)
	u := here.Admin(t, srv.URL)
	token, agentURL := u.CreateWorkspace("dev")
	p := b.tab("alice")

	p.navigate(srv.URL + "/login")
	p.typeInto(`input[name=login]`, "alice")
	p.typeInto(`input[name=password]`, "wrong-horse")
	p.click(`button[type=submit]`)
	msg := p.waitText("the sign-in error", `document.querySelector(".login .alert-error")?.innerText`,
		func(s string) bool { return s != "" })
	if !strings.Contains(strings.ToLower(msg), "incorrect") {
		t.Errorf("a wrong password shows %q, want the server's 'incorrect …' message", msg)
	}
	if path := p.location().Path; path != "/login" {
		t.Errorf("after a wrong password the browser is at %s, want /login", path)
	}

	// The email signs in as well as the username.
	p.signIn(srv.URL, "alice@example.com", "correct-horse")
	row := statusBadge("alice/dev")
	p.waitText("the workspace row, disconnected", row, func(s string) bool { return s == "Disconnected" })

	// The page polls: the agent's arrival shows without a reload.
	agent := here.StartAgent(t, agentURL, token)
	p.waitText("the workspace row, connected", row, func(s string) bool { return s == "Connected" })
	p.waitContains("the user's name in the top bar", `document.querySelector(".user-name")?.textContent`, "alice")
	p.screenshot("dashboard")

	// An agent that dies is shown disconnected within a few seconds: the
	// server notices the closed connection at once, and the page polls
	// every 3 s.
	killed := time.Now()
	agent.Kill()
	p.waitText("the workspace row, disconnected again", row, func(s string) bool { return s == "Disconnected" })
	if took := time.Since(killed); took > 10*time.Second {
		t.Errorf("the dashboard showed the dead agent after %s, want a few seconds", took)
	} else {
		t.Logf("the dashboard showed the agent disconnected %s after it died", took.Round(100*time.Millisecond))
	}

	// The health page, reached from the top bar.
	p.click(`header nav a[href="/health"]`)
	p.waitPath("/health")
	for _, check := range []string{"access_url", "websocket", "store", "derp"} {
		p.waitText("the "+check+" check",
			fmt.Sprintf(`document.querySelector('article.check[data-check=%s] .badge')?.textContent?.trim()`, jsString(check)),
			func(s string) bool { return s == "ok" })
	}
	p.waitText("a DERP region row", `document.querySelector('tr[data-region] .badge')?.textContent?.trim()`,
		func(s string) bool { return s == "ok" })
	p.screenshot("health")
}

// terminalRows is the text on the terminal's screen as xterm.js draws it.
const terminalRows = `document.querySelector(".xterm-rows")?.innerText`

// terminalBuffer is every line the terminal holds, scrollback included.
const terminalBuffer = `(() => {
	const t = window.tetherTerminal;
	if (!t) return "";
	const b = t.buffer.active, out = [];
	for (let i = 0; i < b.length; i++) out.push(b.getLine(i)?.translateToString(true) ?? "");
	return out.join("\n");
})()`

// terminalReady is the screen's text once the page is connected (its
// status line hidden) and the shell has drawn something.
const terminalReady = `(() => {
	const s = document.querySelector(".terminal-status");
	return s && s.hidden ? document.querySelector(".xterm-rows")?.innerText?.trim() : "";
})()`

// underscoreRow is the terminal's drawn row that holds "____" alone.
const underscoreRow = `[...document.querySelectorAll(".xterm-rows > div")].find((d) => d.textContent.trim() === "____")`

// checkWebTerminal opens the web terminal at terminalURL, runs commands,
// reloads the page, and checks that the same shell comes back with its
// output.
func checkWebTerminal(t *testing.T, p *tab, terminalURL string) {
	t.Helper()
	p.navigate(terminalURL)
	p.waitText("the terminal to connect and the shell to start", terminalReady, func(s string) bool { return s != "" })
	session := p.location().Query().Get("session")
	if session == "" {
		t.Fatalf("the terminal page's URL %s names no session", p.location())
	}

	p.focusedKeys("echo hello-$((6*7))\r")
	p.waitContains("the command's output on the screen", terminalRows, "hello-42")

	// Underscores sit below most fonts' baseline: rows too short for them
	// clip them, and the screen shows blanks where the text has "_".
	p.focusedKeys("echo ____\r")
	p.waitText("a row of underscores", underscoreRow+` ? "shown" : ""`, func(s string) bool { return s != "" })
	if ink := p.inkPixels(underscoreRow + `.getBoundingClientRect()`); ink == 0 {
		t.Errorf("the terminal draws a row of underscores as blank: its rows clip them")
	}
	p.focusedKeys("TETHER_MARK=kept-$((2*3)); echo set-$TETHER_MARK\r")
	p.waitContains("the variable's value on the screen", terminalRows, "set-kept-6")
	p.screenshot("terminal")

	// A reload reattaches to the same shell: its output comes back in the
	// scrollback, and its variables are still set.
	p.reload()
	if got := p.location().Query().Get("session"); got != session {
		t.Fatalf("after a reload the page is on session %q, want %q", got, session)
	}
	p.waitText("the terminal to reconnect", terminalReady, func(s string) bool { return s != "" })
	p.waitContains("the earlier output, replayed", terminalBuffer, "hello-42")
	p.focusedKeys("echo mark=$TETHER_MARK\r")
	p.waitContains("the variable set before the reload", terminalRows, "mark=kept-6")
	if got := strings.Count(p.text(terminalBuffer), "hello-42"); got != 1 {
		t.Errorf("after the reload the terminal holds the output %d times, want once", got)
	}
	p.screenshot("terminal-after-reload")
}

// TestBrowserTerminal uses the web terminal of a connected workspace.
func TestBrowserTerminal(t *testing.T) {
	b := newBrowser(t)
	env := startWorkspace(t)
	p := b.tab("alice")
	p.signIn(env.Server.URL, "alice", "correct-horse")
	p.waitText("the workspace row, connected", statusBadge("alice/dev"), func(s string) bool { return s == "Connected" })
	// The row's Terminal button is how people get there.
	href := p.text(`document.querySelector('tr.ws-row[data-workspace="alice/dev"] td.actions a')?.href`)
	if want := env.Server.URL + "/@alice/dev/terminal"; href != want {
		t.Errorf("the dashboard's Terminal button goes to %q, want %q", href, want)
	}
	checkWebTerminal(t, p, env.Server.URL+"/@alice/dev/terminal")

	// The agent dies: the page says so within seconds (it would otherwise
	// sit on a dead connection), and when the agent is back the page
	// reconnects by itself to a working shell.
	killed := time.Now()
	env.Agent.Kill()
	status := `(() => { const s = document.querySelector(".terminal-status"); return s && !s.hidden ? s.innerText : ""; })()`
	p.waitContains("the terminal to show the agent gone", status, "Disconnected")
	if took := time.Since(killed); took > 10*time.Second {
		t.Errorf("the terminal showed the dead agent after %s, want a few seconds", took)
	}
	p.waitContains("the reason, on the terminal", terminalBuffer, "agent disconnected")
	p.screenshot("terminal-agent-gone")
	here.StartAgent(t, env.AgentURL, env.Token)
	p.waitText("the terminal to reconnect to the new agent", terminalReady, func(s string) bool { return s != "" })
	p.focusedKeys("echo back-$((1+1))\r")
	p.waitContains("a command's output after reconnecting", terminalRows, "back-2")
}

// TestBrowserOnlyWebTerminal: a --browser-only server refuses the CLI's
// tunnels and still serves the web terminal.
func TestBrowserOnlyWebTerminal(t *testing.T) {
	b := newBrowser(t)
	env := startWorkspace(t, "--browser-only")
	if stderr := env.User.Fails("ssh", "dev", "--", "true"); !strings.Contains(stderr, "browser-only") {
		t.Errorf("tether ssh on a browser-only server said %q, want it to say browser-only", stderr)
	}
	p := b.tab("alice")
	p.signIn(env.Server.URL, "alice", "correct-horse")
	checkWebTerminal(t, p, env.Server.URL+"/@alice/dev/terminal")
	// Browser-only keeps the terminal on the server's relay.
	if got := p.text(terminalPath); got != "relayed" {
		t.Errorf("the terminal's path on a browser-only server is %q, want relayed", got)
	}
	if p.text(`window.tetherTerminalPeer ? "peer" : ""`) != "" {
		t.Errorf("the page opened a peer connection on a browser-only server")
	}
}
