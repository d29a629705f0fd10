package app_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// browser drives headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe:
// JSON messages separated by NUL on file descriptors 3 and 4), so no WebSocket client or browser
// driver is needed.
type browser struct {
	t       *testing.T
	cmd     *exec.Cmd
	in      *os.File // our end of Chromium's fd 3
	mu      sync.Mutex
	next    int
	waiting map[int]chan map[string]any
	session string
}

func startBrowser(t *testing.T) *browser {
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SHADOWBRIDGE_REQUIRE_BROWSER") != "" {
			t.Fatalf("chromium not found (run deployments/browser/install-chromium.sh): %v", err)
		}
		t.Skip("chromium not installed (deployments/browser/install-chromium.sh)")
	}
	cmdR, cmdW, _ := os.Pipe() // we write commands, Chromium reads fd 3
	resR, resW, _ := os.Pipe() // Chromium writes fd 4, we read
	profile, err := os.MkdirTemp("", "shadowbridge-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--window-size=1280,1000", "--remote-debugging-pipe", "--user-data-dir="+profile, "about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, resW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Chromium's helpers die with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmdR.Close()
	resW.Close()
	b := &browser{t: t, cmd: cmd, in: cmdW, waiting: map[int]chan map[string]any{}}
	go func() {
		rd := bufio.NewReader(resR)
		for {
			msg, err := rd.ReadBytes(0)
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(bytes.TrimSuffix(msg, []byte{0}), &m) != nil {
				continue
			}
			id, ok := m["id"].(float64)
			if !ok {
				continue // an event
			}
			b.mu.Lock()
			ch := b.waiting[int(id)]
			delete(b.waiting, int(id))
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmdW.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = os.RemoveAll(profile) // best effort: a helper may still be exiting
	})
	target := b.call("", "Target.createTarget", map[string]any{"url": "about:blank"})
	att := b.call("", "Target.attachToTarget", map[string]any{"targetId": target["targetId"], "flatten": true})
	b.session = att["sessionId"].(string)
	b.call(b.session, "Page.enable", nil)
	return b
}

func (b *browser) call(session, method string, params map[string]any) map[string]any {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan map[string]any, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := b.in.Write(append(data, 0)); err != nil {
		b.t.Fatalf("%s: %v", method, err)
	}
	select {
	case m := <-ch:
		if e, ok := m["error"]; ok {
			b.t.Fatalf("%s: %v", method, e)
		}
		r, _ := m["result"].(map[string]any)
		return r
	case <-time.After(30 * time.Second):
		b.t.Fatalf("%s: no answer from chromium", method)
		return nil
	}
}

func (b *browser) navigate(url string) {
	b.call(b.session, "Page.navigate", map[string]any{"url": url})
}

// eval returns the value of a JavaScript expression in the page, as a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	r := b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	v, _ := r["result"].(map[string]any)
	return fmt.Sprint(v["value"])
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
	r := b.call(b.session, "Page.captureScreenshot", map[string]any{"format": "png"})
	png, err := base64.StdEncoding.DecodeString(r["data"].(string))
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		b.t.Fatalf("screenshot: %d bytes, %v", len(png), err)
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
