package e2e

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// delayedFront forwards TCP connections to backend, holding every chunk
// for delay in each direction: a browser far from the server. It returns
// its address.
func delayedFront(t *testing.T, backend string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				time.Sleep(delay) // the link's latency, not a wait for a condition
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go pipe(b, c)
			go pipe(c, b)
		}
	}()
	return ln.Addr().String()
}

// regionChosen is the region the dashboard opens terminals and apps on.
const regionChosen = `document.querySelector(".region-picker")?.dataset.region ?? ""`

// TestBrowserWorkspaceProxy: a browser far from the primary and near a
// proxy. The dashboard measures both and picks the proxy; the terminal and
// the apps open there, signed in through the primary; when the proxy dies
// the terminal says so and offers the primary, and the dashboard falls
// back to it.
func TestBrowserWorkspaceProxy(t *testing.T) {
	b := newBrowser(t)
	// The primary is reached only through a link with 40 ms each way.
	backend := "127.0.0.1:" + strconv.Itoa(freePort(t, "tcp"))
	far := "http://" + delayedFront(t, backend, 40*time.Millisecond)
	d := startProxyDeployment(t, "--http-address", backend, "--access-url", far)

	p := b.tab("alice")
	p.signIn(far, "alice", "correct-horse")
	p.waitText("the dashboard to pick the proxy by latency", regionChosen, func(s string) bool { return s == "edge" })
	p.waitText("the proxy's latency shown", `document.getElementById("region-select")?.innerText ?? ""`,
		func(s string) bool { return strings.Contains(s, "Edge — ") && strings.Contains(s, " ms") })
	terminal := d.proxyURL + "/@alice/dev/terminal"
	p.waitText("the terminal link on the proxy", `document.querySelector('tr.ws-row[data-workspace="alice/dev"] a.button')?.href ?? ""`,
		func(s string) bool { return s == terminal })
	links := appHrefs(p, "alice/dev")
	want := map[string]string{
		"site": d.proxyURL + "/@alice/dev/apps/site/",
		"sub":  "http://" + d.proxyAppHost("sub") + "/",
		"pub":  "http://" + d.proxyAppHost("pub") + "/",
	}
	for name, href := range want {
		if links[name] != href {
			t.Errorf("the dashboard links app %s to %q, want %q on the proxy", name, links[name], href)
		}
	}
	p.screenshot("dashboard-on-proxy")

	// The apps, through the proxy, handed over from the primary.
	for _, name := range []string{"site", "sub"} {
		p.navigate(want[name])
		p.waitText("app "+name+" through the proxy", markerText, func(s string) bool { return s == appMarker })
		if loc := p.location(); "http://"+loc.Host != strings.TrimSuffix(strings.Split(want[name], "/@")[0], "/") {
			t.Errorf("app %s ended up at %s, want on the proxy (%s)", name, loc, want[name])
		}
	}

	// The terminal, on the proxy.
	tp := b.tab("alice-terminal")
	tp.signIn(far, "alice", "correct-horse")
	tp.navigate(terminal)
	tp.waitText("the terminal on the proxy to connect", terminalReady, func(s string) bool { return s != "" })
	if loc := tp.location(); loc.Host != "localhost:"+d.proxyPort {
		t.Fatalf("the terminal is at %s, want on the proxy", loc)
	}
	// It goes direct as on the primary (the proxy forwards the
	// signalling over its own tunnel); relayed, it goes through the proxy.
	tp.waitTerminalPath("direct", terminalDirectTimeout)
	tp.focusedKeys("echo via-proxy-$((6*7))\r")
	tp.waitContains("the command's output", terminalRows, "via-proxy-42")
	tp.screenshot("terminal-on-proxy")

	// The proxy dies: the terminal says so and offers the primary, and
	// the dashboard goes back to the primary.
	d.proxy.Kill()
	tp.waitText("the terminal to offer the primary", `document.querySelector(".terminal-status a.open-primary")?.href ?? ""`,
		func(s string) bool { return s == d.srv.URL+"/@alice/dev/terminal?"+tp.location().RawQuery })
	if status := tp.text(`document.querySelector(".terminal-status")?.innerText ?? ""`); !strings.Contains(status, "workspace proxy is not reachable") {
		t.Errorf("the terminal's status when the proxy died: %q", status)
	}
	tp.screenshot("terminal-proxy-gone")
	p.navigate(far + "/")
	p.waitText("the dashboard to fall back to the primary", regionChosen, func(s string) bool { return s == "primary" })
	p.waitText("the terminal link on the primary", `document.querySelector('tr.ws-row[data-workspace="alice/dev"] a.button')?.href ?? ""`,
		func(s string) bool { return s == far+"/@alice/dev/terminal" })
}
