package app_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/buildinfo"
	"shadowbridge/domain"

	"github.com/nats-io/nats.go/jetstream"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample line starting with prefix (name and labels).
func metric(t *testing.T, text, prefix string) float64 {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return v
		}
	}
	return -1
}

func TestMetricsAndReadiness(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	srv := httptest.NewServer(e.app.Handler())
	defer srv.Close()
	waitFor(t, "ready", 10*time.Second, func() bool { code, _ := get(t, srv.URL+"/readyz"); return code == 200 })
	_, before := get(t, srv.URL+"/metrics")
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"metrics"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	if _, code := e.call(t, "prov.cmd.demo.add", `{"objectClass":"AccountObjectClass","attributes":{}}`); code != "400" {
		t.Fatalf("bad add: %s", code)
	}
	// Made-up subjects answer errors but add no series: labels come from the known verbs only.
	for _, subj := range []string{"prov.cmd.junkresource.junkverb1", "prov.cmd.demo.junkverb2", "prov.query.junkquery3"} {
		if _, code := e.call(t, subj, `{}`); code == "" {
			t.Fatalf("%s answered no error", subj)
		}
	}
	code, text := get(t, srv.URL+"/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	if strings.Contains(text, "junk") {
		t.Errorf("a made-up subject became a metric label:\n%s", text)
	}
	if bi := buildinfo.Read(); metric(t, text, fmt.Sprintf(`shadowbridge_build_info{goversion=%q,revision=%q,version=%q}`, bi.GoVersion, bi.Revision, bi.Version)) != 1 {
		t.Errorf("no shadowbridge_build_info for %+v:\n%s", bi, text)
	}
	if metric(t, text, `shadowbridge_commands_total{outcome="not-found",verb="unknown"}`) != 2 ||
		metric(t, text, `shadowbridge_queries_total{outcome="not-found",query="unknown"}`) != 1 {
		t.Errorf("made-up subjects not counted as unknown commands (2) and queries (1):\n%s", text)
	}
	for _, c := range []struct {
		prefix string
		min    float64
	}{
		{`shadowbridge_commands_total{outcome="ok",verb="add"}`, 1},
		{`shadowbridge_commands_total{outcome="schema",verb="add"}`, 1},
		{`shadowbridge_events_appended_total{type="AddRequested"}`, 1},
		{`shadowbridge_events_appended_total{type="OperationCompleted"}`, 1},
		{`shadowbridge_bridge_outcomes_total{outcome="sent",resource="demo"}`, 1},
		{`shadowbridge_command_duration_seconds_count{verb="add"}`, 2},
		{`shadowbridge_resource_state{resource="demo",state="up"}`, 1},
		{`shadowbridge_resource_state{resource="demo",state="down"}`, 0},
		{`shadowbridge_confirmations_total{outcome="ok",resource="demo"}`, 1},
		{`shadowbridge_resource_maintenance{resource="demo"}`, 0},
		{`shadowbridge_projection_lag_records`, 0},
	} {
		got := metric(t, text, c.prefix)
		if got < c.min {
			t.Errorf("%s = %v, want >= %v", c.prefix, got, c.min)
		}
		// Counters only grow, and this test's commands moved them (the registry is process-wide).
		if strings.HasPrefix(c.prefix, "shadowbridge_commands_total") && metric(t, before, c.prefix) >= got {
			t.Errorf("%s did not grow: %v -> %v", c.prefix, metric(t, before, c.prefix), got)
		}
	}
	if !regexp.MustCompile(`(?m)^# TYPE shadowbridge_command_duration_seconds histogram$`).MatchString(text) ||
		!strings.Contains(text, `shadowbridge_command_duration_seconds_bucket{verb="add",le="+Inf"}`) {
		t.Fatalf("histogram missing:\n%s", text)
	}
	for _, std := range []string{"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_resident_memory_bytes "} {
		if !strings.Contains(text, "\n"+std) {
			t.Errorf("standard collector series %q missing", std)
		}
	}
	// NATS gone: not ready.
	e.srv.Shutdown()
	waitFor(t, "not ready without NATS", 10*time.Second, func() bool {
		code, body := get(t, srv.URL+"/readyz")
		return code == 503 && strings.Contains(body, "NATS connection")
	})
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz without NATS: %d (liveness must not depend on NATS)", code)
	}
}

// Each app counts into a registry of its own: two apps in one process do not mix their metrics.
func TestMetricsArePerApp(t *testing.T) {
	one := start(t, app.DefaultConfig(), app.Options{NoDispatcher: true})
	two := start(t, app.DefaultConfig(), app.Options{NoDispatcher: true})
	one.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"only-one"}}})
	h1, h2 := httptest.NewServer(one.app.Handler()), httptest.NewServer(two.app.Handler())
	defer h1.Close()
	defer h2.Close()
	_, m1 := get(t, h1.URL+"/metrics")
	_, m2 := get(t, h2.URL+"/metrics")
	const series = `shadowbridge_commands_total{outcome="ok",verb="add"}`
	if metric(t, m1, series) != 1 || metric(t, m2, series) != -1 {
		t.Fatalf("adds counted: app one %v, app two %v (want 1 and none)", metric(t, m1, series), metric(t, m2, series))
	}
}

// A component whose consumer is deleted under it (an operator's `nats consumer rm`) is started
// again, which makes the consumer anew: the dispatcher and the projector go on, a new add still
// becomes live in the projection, and each restart is counted. Before, the component ended for
// good while the service went on answering and saying it was ready.
func TestComponentsStartAgainWhenTheirConsumerIsDeleted(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{})
	srv := httptest.NewServer(e.app.Handler())
	defer srv.Close()
	first := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"before"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", first, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	js, _ := jetstream.New(e.nc)
	for _, durable := range []string{"PROV_DISPATCHER", "PROV_PROJECTOR"} {
		if err := js.DeleteConsumer(t.Context(), e.app.Store.Config().Stream, durable); err != nil {
			t.Fatalf("delete %s: %v", durable, err)
		}
	}
	id := e.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"after"}}})["shadowId"].(string)
	e.waitShadow(t, "demo", id, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	_, text := get(t, srv.URL+"/metrics")
	// The new consumer starts at the log's beginning: the first add's request, delivered again,
	// must not go to the target a second time.
	if n := metric(t, text, `shadowbridge_bridge_outcomes_total{outcome="sent",resource="demo"}`); n != 2 {
		t.Errorf("%v requests sent for 2 adds", n)
	}
	for _, c := range []string{"dispatcher", "projector"} {
		if n := metric(t, text, fmt.Sprintf(`shadowbridge_component_restarts_total{component=%q}`, c)); n != 1 {
			t.Errorf("%s restarted %v times, want 1", c, n)
		}
	}
	if r := e.app.Running(); !slices.Contains(r, "dispatcher") || !slices.Contains(r, "projector") {
		t.Fatalf("running: %v", r)
	}

	// The same after a restart, where this process's memory of what it sent is gone: a new
	// instance on a log whose dispatcher consumer was deleted sends only the new request.
	e.app.Close()
	if err := js.DeleteConsumer(t.Context(), e.app.Store.Config().Stream, "PROV_DISPATCHER"); err != nil {
		t.Fatal(err)
	}
	e2 := startOn(t, e.srv, app.DefaultConfig(), app.Options{})
	srv2 := httptest.NewServer(e2.app.Handler())
	defer srv2.Close()
	third := e2.ok(t, "prov.cmd.demo.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"restarted"}}})["shadowId"].(string)
	e2.waitShadow(t, "demo", third, func(d domain.ShadowData) bool { return d.LifecycleState == domain.LifecycleLive })
	_, text = get(t, srv2.URL+"/metrics")
	if n := metric(t, text, `shadowbridge_bridge_outcomes_total{outcome="sent",resource="demo"}`); n != 1 {
		t.Errorf("the restarted instance sent %v requests for 1 new add (the log's earlier requests again)", n)
	}
}
