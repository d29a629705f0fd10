package app_test

import (
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// Why work waits, in a browser whose clock is in Kolkata: the pending table pages 50 at a time
// ("1–50 of 55") with each shadow's age, next attempt and last error; the recent failures list
// the failed attempts and a fatal error, each a link to its shadow; every time is local.
func TestDashboardPendingPagesAndFailuresInBrowser(t *testing.T) {
	const zone = "Asia/Kolkata" // +05:30: no hour of it reads the same in UTC
	kolkata, err := time.LoadLocation(zone)
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	b := startBrowser(t, chromedp.Env("TZ="+zone), chromedp.Flag("lang", "en-US"))
	cfg, err := app.Parse([]byte(resourceYAML("amqp://" + natstest.FreeAddr(t)))) // nothing listens: every attempt fails
	if err != nil {
		t.Fatal(err)
	}
	cfg.Resources[0].Consistency.OperationRetryMaxAttempts = ptr(2)
	e := start(t, cfg, app.Options{})
	srv := httptest.NewServer(e.app.Handler())
	defer func() { srv.CloseClientConnections(); srv.Close() }()
	const n = 55
	ids := make([]string, n)
	for i := range n {
		ids[i] = e.ok(t, "prov.cmd.fs.add", map[string]any{"objectClass": "AccountObjectClass",
			"attributes": map[string]any{"login": []any{fmt.Sprintf("u%02d", i)}}})["shadowId"].(string)
	}
	for _, id := range ids {
		e.waitShadow(t, "fs", id, func(d domain.ShadowData) bool {
			return len(d.PendingOperations) == 1 && d.PendingOperations[0].LastError != nil
		})
	}

	b.navigate(srv.URL + "/")
	b.waitEval("first page counted", `document.getElementById("pendingCount").textContent`, "1–50 of 55")
	rows := `document.querySelectorAll('#pending tbody tr')`
	b.waitEval("fifty rows", rows+`.length`, "50")
	b.waitEval("every row has its age, next attempt and last error", `String([...`+rows+`].every(r =>
		r.querySelector('[data-col=age]').textContent !== "" && r.querySelector('[data-col=next] time') &&
		r.querySelector('[data-col=error]').textContent.includes("communication")))`, "true")
	checkLocal(t, b, `#pending [data-col=next] time`, kolkata)
	checkLocal(t, b, `#pending [data-col=error] time`, kolkata)

	b.eval(`document.getElementById("pendingNext").click()`)
	b.waitEval("second page", `document.getElementById("pendingCount").textContent`, "51–55 of 55")
	b.waitEval("its five rows", rows+`.length`, "5")
	b.waitEval("no page after the last", `String(document.getElementById("pendingNext").disabled)`, "true")
	// A later page stays live: the next push refreshes it rather than going back to the first
	// (its rows are those after the page's cursor; the new shadow's id may sort before it).
	e.ok(t, "prov.cmd.fs.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"u99"}}})
	b.waitEval("a later page is refreshed by pushes", `String(/^51–5[56] of 56$/.test(document.getElementById("pendingCount").textContent))`, "true")
	b.eval(`document.getElementById("pendingFirst").click()`)
	b.waitEval("back to the first page", `document.getElementById("pendingCount").textContent`, "1–50 of 56")

	failures := `document.querySelectorAll('#failures tbody tr[data-failure]')`
	b.waitEval("twenty recent failures", failures+`.length`, "20")
	checkLocal(t, b, `#failures tbody time`, kolkata)
	// The second and last attempt of one operation fails: it ends with fatal_error, listed first.
	e.ok(t, "prov.cmd.fs.refresh", map[string]any{"shadowId": ids[7], "forceRetry": true})
	b.waitEval("the fatal error listed first", `(document.querySelector('#failures tbody tr[data-failure]') || {textContent: ""}).textContent.includes("ended with fatal_error")`, "true")
	b.waitEval("linked to its shadow", `document.querySelector('#failures tbody tr[data-failure] a').getAttribute("href")`, "/shadow/"+ids[7])
	b.waitEval("its last attempt is not said to be retried", `String([...document.querySelectorAll('#failures tbody tr[data-failure]')].filter(r =>
		r.querySelector('a').getAttribute("href") === "/shadow/`+ids[7]+`").map(r => r.children[4].textContent).join("|"))`,
		"ended with fatal_error|attempt failed")
	b.eval(`window.scrollTo(0, document.getElementById("failures").closest("section").offsetTop - 8)`)
	t.Logf("screenshot: %s", b.screenshot("failures.png"))
	b.eval(`window.scrollTo(0, document.getElementById("pending").closest("section").offsetTop - 8)`)
	t.Logf("screenshot: %s", b.screenshot("pending.png"))

	b.eval(`document.querySelector('#failures tbody tr[data-failure] a').click()`)
	b.waitEval("the shadow's page", `location.pathname`, "/shadow/"+ids[7])
	b.waitEval("its explanation", `String(document.getElementById("why").textContent.includes("fatal_error"))`, "true")
	checkLocal(t, b, `#why time`, kolkata)
}

// checkLocal checks that the first <time> matching sel shows its exact value (the title, RFC
// 3339) as local time in loc, not as UTC.
func checkLocal(t *testing.T, b *browser, sel string, loc *time.Location) {
	t.Helper()
	q := strconv.Quote(sel)
	b.waitEval(sel+" present", `String(!!document.querySelector(`+q+`))`, "true")
	title, text := b.eval(`document.querySelector(`+q+`).title`), b.eval(`document.querySelector(`+q+`).textContent`)
	at, err := time.Parse(time.RFC3339Nano, title)
	if err != nil {
		t.Fatalf("%s: title %q: %v", sel, title, err)
	}
	want := at.In(loc).Format("3:04:05 PM")
	if !strings.Contains(text, want) {
		t.Fatalf("%s shows %q for %s: want the local time %s (%s)", sel, text, title, want, loc)
	}
}
