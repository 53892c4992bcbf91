package e2e

// Helpers for the browser tests: a headless Chromium per test, driven with
// chromedp, with tabs that wait on conditions in the page and leave a
// screenshot and the page's text behind when they fail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

const (
	// browserTimeout bounds everything one test does in its browser.
	browserTimeout = 90 * time.Second
	// pageTimeout bounds one wait for a condition in a page.
	pageTimeout = 20 * time.Second
)

// chromiumPath finds Debian's Chromium. Without it the browser tests skip,
// except in CI, where .ci/run installs it and a skip would hide a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed, and CI must run the browser tests: apt-get install chromium (.ci/run does)")
	}
	t.Skip("chromium is not installed (apt-get install chromium); skipping the browser tests")
	return ""
}

// artifactDir is where screenshots go: $TETHER_ARTIFACTS, or a directory
// under the system's temporary directory that outlives the test run.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TETHER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tether-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	return dir
}

// syncBuffer collects the browser's output for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// browser is one headless Chromium with a fresh profile, ended when the
// test ends. Its tabs are made with tab.
type browser struct {
	t    *testing.T
	root context.Context // the first tab, which owns the browser process
}

// newBrowser starts Chromium. Everything done in it must finish within
// browserTimeout.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	return newBrowserWith(t)
}

// newBrowserWith starts Chromium with further allocator options (the lab's
// runs it in a network namespace).
func newBrowserWith(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir()
	out := &syncBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		// Root on a machine without a network: no sandbox (it needs user
		// namespaces that root in a container may not have), no GPU, and
		// none of the browser's own calls home.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.WindowSize(1280, 800),
		chromedp.CombinedOutput(out),
	)
	opts = append(opts, extra...)
	deadline, cancelDeadline := context.WithTimeout(context.Background(), browserTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(deadline, opts...)
	root, cancelRoot := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelRoot()
		cancelAlloc()
		cancelDeadline()
		if t.Failed() && out.String() != "" {
			t.Logf("chromium output:\n%s", lastLines(out.String(), 30))
		}
	})
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium (%s): %v\n%s", path, err, out.String())
	}
	return &browser{t: t, root: root}
}

// tab opens a tab in a browser context of its own: its cookies and
// storage are its own, like a separate browser profile.
func (b *browser) tab(name string) *tab {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		b.t.Fatalf("open tab %s: %v", name, err)
	}
	p := &tab{t: b.t, name: name, ctx: ctx}
	b.t.Cleanup(func() {
		if b.t.Failed() {
			p.report("at the end of the failed test")
		}
	})
	return p
}

// tab is one page of the browser.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// fatalf ends the test, first saving what the page shows.
func (p *tab) fatalf(format string, args ...any) {
	p.t.Helper()
	msg := fmt.Sprintf(format, args...)
	p.report(msg)
	p.t.Fatalf("%s: %s", p.name, msg)
}

// report logs the page's address and text and saves a screenshot, for
// failures.
func (p *tab) report(why string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	p.t.Logf("%s (%s): page %s shows:\n%s", p.name, why, loc, truncate(text, 2000))
	if png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot()); err == nil {
		file := filepath.Join(artifactDir(p.t), artifactName(p.t, "failed-"+p.name))
		if os.WriteFile(file, png, 0o644) == nil {
			p.t.Logf("%s: screenshot of the failure: %s", p.name, file)
		}
	}
}

// navigate loads a URL and waits for its load event. Pages that answer
// with an error status still load: callers check what they show.
func (p *tab) navigate(u string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		p.fatalf("navigate to %s: %v", u, err)
	}
}

// reload reloads the page and waits for its load event.
func (p *tab) reload() {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		p.fatalf("reload: %v", err)
	}
}

// location is the page's current URL.
func (p *tab) location() *url.URL {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Location())
	if err != nil {
		p.fatalf("location: %v", err)
	}
	u, err := url.Parse(s)
	if err != nil {
		p.fatalf("location %q: %v", s, err)
	}
	return u
}

// eval evaluates a JavaScript expression in the page and decodes its JSON
// value into v.
func (p *tab) eval(expr string, v any) error {
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// text returns an expression's string value ("" for null or undefined).
func (p *tab) text(expr string) string {
	p.t.Helper()
	var s *string
	if err := p.eval(expr, &s); err != nil {
		p.fatalf("evaluate %s: %v", expr, err)
	}
	if s == nil {
		return ""
	}
	return *s
}

// waitText polls a string expression until check accepts it, and returns
// the accepted value. Errors in between (the page navigating, an element
// not there yet) count as not yet.
func (p *tab) waitText(what, expr string, check func(string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(pageTimeout)
	var last string
	var lastErr error
	for {
		var s *string
		lastErr = p.eval(expr, &s)
		if lastErr == nil {
			last = ""
			if s != nil {
				last = *s
			}
			if check(last) {
				return last
			}
		}
		if time.Now().After(deadline) || p.ctx.Err() != nil {
			p.fatalf("timed out after %s waiting for %s; last value %q (error %v)", pageTimeout, what, truncate(last, 500), lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitContains waits for a string expression to contain want.
func (p *tab) waitContains(what, expr, want string) string {
	p.t.Helper()
	return p.waitText(what, expr, func(s string) bool { return strings.Contains(s, want) })
}

// waitPath waits for the page's path to be path.
func (p *tab) waitPath(path string) {
	p.t.Helper()
	p.waitText("the page at "+path, `location.pathname`, func(s string) bool { return s == path })
}

// bodyText is the expression of the page's visible text.
const bodyText = `document.body ? document.body.innerText : ""`

// typeInto types text into the element that sel matches, key by key, as a
// person would.
func (p *tab) typeInto(sel, text string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Focus(chromedp.CSS(sel)), typeKeys(text)); err != nil {
		p.fatalf("type into %s: %v", sel, err)
	}
}

// click clicks the element that sel matches.
func (p *tab) click(sel string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		p.fatalf("click %s: %v", sel, err)
	}
}

// cookies returns the browser's cookies for the given URLs.
func (p *tab) cookies(urls ...string) []*network.Cookie {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: urls})
	if err != nil {
		p.fatalf("get cookies: %v", err)
	}
	return res.Cookies
}

// screenshot saves the visible page as a PNG artifact and returns its path.
func (p *tab) screenshot(what string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.fatalf("screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		p.fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	file := filepath.Join(artifactDir(p.t), artifactName(p.t, what))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of %s: %s", what, file)
	return file
}

// signIn signs in on the dashboard's sign-in page and waits for the page
// it goes on to.
func (p *tab) signIn(serverURL, login, password string) {
	p.t.Helper()
	p.navigate(serverURL + "/login")
	p.typeInto(`input[name=login]`, login)
	p.typeInto(`input[name=password]`, password)
	p.click(`button[type=submit]`)
	p.waitPath("/")
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func artifactName(t *testing.T, what string) string {
	return unsafeFileChars.ReplaceAllString(t.Name()+"-"+what, "_") + ".png"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// focusedKeys types text, key by key, into whatever has the focus: for
// the terminal, whose input element is invisible by design.
func (p *tab) focusedKeys(text string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, typeKeys(text)); err != nil {
		p.fatalf("type %q: %v", text, err)
	}
}

// typeKeys presses a key for each character of text, the way a keyboard
// does: a keydown that carries the character's text, then a keyup.
// chromedp's own KeyEvent sends the text as a separate char event, which
// a page cannot cancel from its keydown handler; xterm.js handles printable
// keys on keydown and cancels them, so it would see every character twice.
func typeKeys(text string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range text {
			var down, up *input.DispatchKeyEventParams
			for _, k := range kb.Encode(r) {
				switch k.Type {
				case kb.KeyDown:
					down = k
				case kb.KeyUp:
					up = k
				case kb.KeyChar:
					if down != nil {
						down.Text, down.UnmodifiedText = k.Text, k.UnmodifiedText
					}
				}
			}
			for _, k := range []*input.DispatchKeyEventParams{down, up} {
				if k == nil {
					continue
				}
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// inkPixels screenshots the rectangle that rectExpr evaluates to (an
// object with x, y, width and height in CSS pixels, or null) and counts the
// pixels that differ from its most common colour, the background: how
// much is drawn there.
func (p *tab) inkPixels(rectExpr string) int {
	p.t.Helper()
	var r *page.Viewport
	if err := p.eval(`(() => { const r = `+rectExpr+`; return r && {x: r.x, y: r.y, width: r.width, height: r.height, scale: 1}; })()`, &r); err != nil {
		p.fatalf("evaluate %s: %v", rectExpr, err)
	}
	if r == nil || r.Width < 1 || r.Height < 1 {
		p.fatalf("%s is not on the page (%+v)", rectExpr, r)
	}
	ctx, cancel := context.WithTimeout(p.ctx, pageTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{Format: page.CaptureScreenshotFormatPng, Clip: r})
	if err != nil {
		p.fatalf("screenshot of %+v: %v", r, err)
	}
	img, err := png.Decode(bytes.NewReader(res.Data))
	if err != nil {
		p.fatalf("decode screenshot: %v", err)
	}
	counts := map[color.RGBA]int{}
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			counts[color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)]++
		}
	}
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	return bounds.Dx()*bounds.Dy() - most
}
