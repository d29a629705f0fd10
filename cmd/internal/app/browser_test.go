package app_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// browser drives headless Debian Chromium (installed by deployments/browser/install-chromium.sh)
// through chromedp.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SHADOWBRIDGE_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium not found (run deployments/browser/install-chromium.sh): %v", err)
		}
		t.Skip("chromium not installed (deployments/browser/install-chromium.sh)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-quic", true), chromedp.Flag("hide-scrollbars", true), chromedp.WindowSize(1280, 1000))
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no timeout on this first call)
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

// timeout bounds one step, on a context derived from the one that started the browser.
func (b *browser) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, 30*time.Second)
}

// navigate loads url and waits for the page's load event (any HTTP status: error pages are
// pages too).
func (b *browser) navigate(url string) {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("navigate %s: %v", url, err)
	}
}

// eval returns the value of a JavaScript expression in the page, as a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[any](expr))
	if err != nil {
		b.t.Fatalf("eval %s: %v", expr, err)
	}
	if v == nil {
		return "<nil>"
	}
	return fmt.Sprint(v)
}

func (b *browser) waitEval(what, expr, want string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := ""
	for time.Now().Before(deadline) {
		if got = b.eval(expr); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("%s: %s = %q, want %q", what, expr, got, want)
}

// screenshot saves a PNG of the page in SHADOWBRIDGE_SCREENSHOTS (a directory; the test's temp
// dir when unset) and returns its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := b.timeout()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		b.t.Fatalf("screenshot: %d bytes", len(png))
	}
	dir := os.Getenv("SHADOWBRIDGE_SCREENSHOTS")
	if dir == "" {
		dir = b.t.TempDir()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return path
}

func counterExpr(id string) string {
	return fmt.Sprintf(`(document.querySelector('[data-counter="%s"] .value') || {}).textContent`, id)
}

// The dashboard in a real browser: counts follow the projection live (server-sent events, no
// reload) when an add arrives over NATS; the shadow page shows its timeline.
func TestDashboardInBrowser(t *testing.T) {
	b := startBrowser(t)
	e := start(t, app.DefaultConfig(), app.Options{})
	srv := httptest.NewServer(e.app.Handler())
	defer func() { srv.CloseClientConnections(); srv.Close() }() // the pages hold event streams open
	add := func(login string) string {
		id := e.ok(t, "prov.cmd.demo.add", map[string]any{"requestId": "tour-" + login, "objectClass": "AccountObjectClass",
			"attributes": map[string]any{"login": []any{login}, "fullName": []any{strings.ToUpper(login[:1]) + login[1:]}}})["shadowId"].(string)
		e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
		return id
	}
	add("anne")
	b.navigate(srv.URL + "/")
	b.waitEval("first render", counterExpr("demo.live"), "1")
	b.eval(`window.__sameDocument = "yes"`)
	updates := b.eval(`document.body.dataset.updates`)

	id := add("jack")
	b.waitEval("live count after an add over NATS", counterExpr("demo.live"), "2")
	b.waitEval("same document (no reload)", `window.__sameDocument`, "yes")
	if after := b.eval(`document.body.dataset.updates`); after == updates {
		t.Fatalf("no update pushed (%s)", after)
	}
	b.waitEval("stylesheet applied", `getComputedStyle(document.querySelector(".resource")).borderTopStyle`, "solid")
	b.waitEval("availability shown", `document.querySelector('[data-resource="demo"] .avail').textContent`, "up")
	e.ok(t, "prov.cmd.demo.reconcile", map[string]any{})
	b.waitEval("the last reconciliation shown", `(document.querySelector('[data-resource="demo"] [data-reconciliation]') || {}).dataset?.reconciliation`, "finished")
	b.waitEval("its accounts counted", counterExpr("demo.reconciliation.accounts"), "2")
	opsTotal := `document.querySelector('[data-chart="demo.operations"]').dataset.total`
	b.waitEval("operations chart counts both adds", opsTotal, "2")
	add("mary")
	b.waitEval("operations chart moves when load arrives", opsTotal, "3")
	b.eval(`document.querySelector('[data-window="day"]').click()`)
	b.waitEval("day window counts the same operations", opsTotal, "3")
	b.waitEval("day window by ten minutes", `document.querySelector('[data-chart="demo.operations"]').parentNode.querySelector("figcaption").textContent`, "operations completed per 10 minutes, by outcome")
	b.eval(`document.querySelector('[data-window="hour"]').click()`)
	b.waitEval("availability band drawn", `String(document.querySelectorAll('[data-chart="demo.availability"] rect.st-up').length > 0)`, "true")
	b.waitEval("lag chart sampled", `String(Number(document.querySelector('[data-chart="projectionLag"]').dataset.samples) > 0)`, "true")
	b.waitEval("update time readable with the exact value on hover", `String(/^\d{4}-\d\d-\d\dT/.test(document.querySelector('#status time').title))`, "true")

	// All shadows, searchable: by login, by state; the list links to the shadow page.
	b.waitEval("list loaded", `document.getElementById("found").textContent`, "3 shadows")
	b.eval(`document.getElementById("q").value = "JAC"; document.getElementById("search").requestSubmit()`)
	b.waitEval("search by login", `[...document.querySelectorAll('#shadows tbody tr')].map(r => r.children[2].textContent).join(",")`, "jack")
	b.eval(`document.getElementById("q").value = ""; document.getElementById("state").value = "tombstone"; document.getElementById("search").requestSubmit()`)
	b.waitEval("search by state", `document.getElementById("found").textContent`, "0 shadows")

	// Maintenance is not green; a modify held by it shows the change it carries.
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": true, "reason": "patching"})
	b.waitEval("maintenance badge", `document.querySelector('[data-resource="demo"] .avail').className`, "avail maintenance")
	if bg := b.eval(`getComputedStyle(document.querySelector('[data-resource="demo"] .avail')).backgroundColor`); bg == "rgb(214, 245, 221)" {
		t.Fatalf("up · maintenance is painted up's green (%s)", bg)
	}
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"shadowId": id, "changes": map[string]any{"group": map[string]any{"add": []any{"pirates"}}}})
	b.waitEval("pending modify shows its change", `String(document.querySelector('#pending tbody').textContent.includes("group+=pirates"))`, "true")
	t.Logf("dashboard screenshot: %s", b.screenshot("dashboard.png"))

	b.navigate(srv.URL + "/shadow/" + id)
	b.waitEval("timeline", `String([...document.querySelectorAll('#timeline tbody tr')].some(r => r.textContent.includes("AddRequested")))`, "true")
	b.waitEval("lifecycle in title", `String(document.getElementById("title").textContent.endsWith("live"))`, "true")
	b.waitEval("held modify carries its change", `String([...document.querySelectorAll('#ops tbody tr')].some(r => r.textContent.includes("group+=pirates")))`, "true")
	b.waitEval("attributes as a table", `document.querySelector('#attrs [data-attr="login"]').children[1].textContent`, "jack")
	b.waitEval("timer rows show their due time", `String([...document.querySelectorAll('#timeline tr[data-type="TimerSet"]')].every(r => r.lastChild.textContent.startsWith("due ") && r.lastChild.querySelector("time")) && document.querySelectorAll('#timeline tr[data-type="TimerSet"]').length > 0)`, "true")
	b.waitEval("timeline times have the exact value on hover", `String(/^\d{4}-/.test(document.querySelector('#timeline tbody time').title))`, "true")
	e.ok(t, "prov.cmd.demo.maintenance", map[string]any{"maintenance": false})
	before := b.eval(`document.querySelectorAll('#timeline tbody tr').length`)
	e.ok(t, "prov.cmd.demo.modify", map[string]any{"shadowId": id, "changes": map[string]any{"fullName": map[string]any{"replace": []any{"Jack Sparrow"}}}})
	b.waitEval("modify appears live", `String(document.getElementById("attrs").textContent.includes("Jack Sparrow"))`, "true")
	if after := b.eval(`document.querySelectorAll('#timeline tbody tr').length`); after == before {
		t.Fatalf("timeline did not grow: %s rows", after)
	}
	t.Logf("shadow screenshot: %s", b.screenshot("shadow.png"))

	// An unknown shadow is a 404 with a page saying so, not an empty page waiting forever.
	unknown := srv.URL + "/shadow/00000000-0000-4000-8000-000000000000"
	resp, err := http.Get(unknown)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown shadow page: %d, want 404", resp.StatusCode)
	}
	b.navigate(unknown)
	b.waitEval("not-found page", `document.querySelector("h2") && document.querySelector("h2").textContent`, "Not found")
}

// With a token, a browser gets in by opening /?token=... once: the page, its script (under the
// Content-Security-Policy) and its event stream work on the cookie, and live updates arrive.
func TestDashboardInBrowserWithToken(t *testing.T) {
	b := startBrowser(t)
	cfg := app.DefaultConfig()
	cfg.HTTP = app.HTTPConfig{Listen: "0.0.0.0:0", Token: "browser-token-0123456789"}
	e := start(t, cfg, app.Options{})
	srv := httptest.NewServer(e.app.Handler())
	defer func() { srv.CloseClientConnections(); srv.Close() }()
	b.navigate(srv.URL + "/")
	b.waitEval("refused without the token", `String(document.body.textContent.includes("unauthorized"))`, "true")
	b.navigate(srv.URL + "/?token=browser-token-0123456789")
	b.waitEval("token dropped from the address", `location.search`, "")
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"tok"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	b.waitEval("live count pushed over the cookie-authenticated stream", counterExpr("demo.live"), "1")
}
