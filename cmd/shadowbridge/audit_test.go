package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/projections"
)

func TestAuditFiltersAndFormats(t *testing.T) {
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	before := time.Now().UTC()
	idOf := regexp.MustCompile(`"shadowId": "([^"]+)"`)
	var ids []string
	for _, login := range []string{"anne", "bob"} {
		out, err := client(t, natsURL, "add", "-o", "json", "demo", "login="+login, "--request-id", "hr-"+login)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, idOf.FindStringSubmatch(out)[1])
	}
	waitLive := func(id string) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, _ := client(t, natsURL, "get", "-o", "json", id)
			if strings.Contains(out, `"lifecycleState": "live"`) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never live: %s", id, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, id := range ids {
		waitLive(id)
	}
	if _, err := client(t, natsURL, "modify", "-o", "json", "demo", "--id", "login=anne", "fullName=Anne Bonny", "--request-id", "hr-anne-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, natsURL, "delete", "-o", "json", "demo", "--id", "login=bob"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the sample target answer

	lines := func(args ...string) []map[string]any {
		t.Helper()
		out, err := client(t, natsURL, append([]string{"audit", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("audit %v: %v", args, err)
		}
		var got []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			got = append(got, m)
		}
		return got
	}
	all := lines()
	if len(all) < 10 {
		t.Fatalf("audit of everything: %d events", len(all))
	}
	for _, e := range all {
		for _, k := range []string{"time", "type", "seq", "shadowId", "resource"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("event without %s: %v", k, e)
			}
		}
	}
	// Every event of the operation the requestId names, and nothing else: requested, released,
	// sent, completed.
	anne := lines("--request-id", "hr-anne")
	types := []string{}
	for _, e := range anne {
		types = append(types, e["type"].(string))
		if e["requestId"] != "hr-anne" || e["operation"] != "add" {
			t.Fatalf("request filter let through %v", e)
		}
	}
	for _, want := range []string{"AddRequested", "DispatchRequested", "OperationSent", "OperationCompleted"} {
		if !strings.Contains(strings.Join(types, " "), want) {
			t.Fatalf("hr-anne events %v miss %s", types, want)
		}
	}
	for _, e := range lines("--operation", "delete") {
		if e["operation"] != "delete" || e["shadowId"] != ids[1] {
			t.Fatalf("operation filter let through %v", e)
		}
	}
	if n := len(lines("--operation", "delete")); n < 2 {
		t.Fatalf("%d delete events", n)
	}
	succ := lines("--result", "success")
	if len(succ) < 4 {
		t.Fatalf("%d success events, want the completions of 2 adds, a modify and a delete", len(succ))
	}
	for _, e := range succ {
		if e["type"] != "OperationCompleted" || e["outcome"] != "success" {
			t.Fatalf("result filter let through %v", e)
		}
	}
	if n := len(lines("--object-class", "NoSuchClass")); n != 0 {
		t.Fatalf("unknown object class matched %d events", n)
	}
	if n := len(lines("--resource", "demo", "--since", before.Add(-time.Minute).Format(time.RFC3339Nano))); n != len(all) {
		t.Fatalf("since before the first event: %d of %d", n, len(all))
	}
	if n := len(lines("--since", "1h", "--until", before.Add(-time.Second).Format(time.RFC3339Nano))); n != 0 {
		t.Fatalf("a window before the first event: %d events", n)
	}

	// The table, with progress forced on.
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"audit", "--progress", "--request-id", "hr-anne-2"}, func(k string) string {
		if k == "NATS_URL" {
			return natsURL
		}
		return ""
	}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	tbl := out.String()
	if !strings.HasPrefix(tbl, "TIME") || !strings.Contains(tbl, "ModifyRequested") || !strings.Contains(tbl, "hr-anne-2") || strings.Contains(tbl, "AddRequested") {
		t.Fatalf("table:\n%s", tbl)
	}
	if !strings.Contains(errb.String(), "records read") {
		t.Fatalf("no progress summary on stderr: %q", errb.String())
	}
	// Bad filters are refused before anything is read.
	for _, args := range [][]string{{"audit", "--operation", "rename"}, {"audit", "--since", "yesterday"},
		{"audit", "--since", "2026-01-02", "--until", "2026-01-01"}, {"audit", "stray"}} {
		if _, err := client(t, natsURL, args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	ex, err := client(t, natsURL, "explain", ids[1])
	if err != nil || !strings.Contains(ex, "is tombstone") || !strings.Contains(ex, "the delete completed with success") || !strings.Contains(ex, "leaves the projection") {
		t.Fatalf("explain: %v\n%s", err, ex)
	}
	if _, err := client(t, natsURL, "explain", "not-a-uuid"); err == nil || !strings.HasSuffix(err.Error(), "(status 400)") {
		t.Fatalf("explain of a bad id: %v", err)
	}
	hist, err := client(t, natsURL, "history", ids[0])
	if err != nil || !strings.Contains(hist, "hr-anne-2") || !strings.Contains(hist, "success") {
		t.Fatalf("history table: %v\n%s", err, hist)
	}
}

// Client verbs attach to what the service made: against a NATS without shadowbridge's stream
// they fail clearly and create nothing; against the service's stream they change nothing of its
// configuration (the service made it with a 7 s dedup window here, the default is 2 minutes).
func TestClientVerbsNeverCreateOrChangeStreams(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, _ := jetstream.New(nc)
	for _, verb := range []string{"audit", "rebuild"} {
		_, err := client(t, srv.ClientURL(), verb)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("%s on an empty NATS: %v, want a clear 'does not exist'", verb, err)
		}
	}
	if names := js.StreamNames(t.Context()); names.Err() == nil {
		for n := range names.Name() {
			t.Fatalf("a client verb created stream %s", n)
		}
	}
	cfg := eventstore.DefaultConfig()
	cfg.DuplicateWindow = 7 * time.Second
	if _, err := eventstore.Open(t.Context(), nc, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.OpenBucket(t.Context(), js, projections.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"audit", "rebuild"} {
		if _, err := client(t, srv.ClientURL(), verb); err != nil {
			t.Fatalf("%s: %v", verb, err)
		}
	}
	s, err := js.Stream(t.Context(), "PROV_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if d := s.CachedInfo().Config.Duplicates; d != 7*time.Second {
		t.Fatalf("the stream's dedup window is %s after client verbs, want the service's 7s", d)
	}
	if _, err := client(t, srv.ClientURL(), "audit", "--prefix", "other"); err == nil || !strings.Contains(err.Error(), "--prefix") {
		t.Fatalf("audit with another prefix: %v", err)
	}
}
