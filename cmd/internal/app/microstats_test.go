package app_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/natsapi"
)

// Discovery shows every verb and query as an endpoint with its own requests and errors, counted
// when the reply is sent (micro's own accounting would count the worker hand-off: every request
// an instant success). Read twice: over the protocol, and with the nats CLI, which nobody here
// wrote.
func TestMicroStatsCountEachVerbAndItsErrors(t *testing.T) {
	e := start(t, app.DefaultConfig(), app.Options{NoDispatcher: true})
	add := func(login string) map[string]any {
		return map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{login}}}
	}
	id := e.ok(t, "prov.cmd.demo.add", add("jack"))["shadowId"].(string)
	for _, c := range []struct {
		subject string
		body    any
		code    string
	}{
		{"prov.cmd.demo.add", add("jack"), "409"},
		{"prov.cmd.demo.add", `{"objectClass":`, "400"},
		{"prov.cmd.demo.modify", `{"shadowId":"00000000-0000-4000-8000-000000000000","changes":{"a":{"add":["b"]}}}`, "404"},
		{"prov.cmd.demo.rename", `{}`, "404"},
		{"prov.query.everything", `{}`, "404"},
		{"prov.query.shadow", map[string]any{"shadowId": id}, ""},
	} {
		if _, code := e.call(t, c.subject, c.body); code != c.code {
			t.Fatalf("%s: code %q, want %q", c.subject, code, c.code)
		}
	}
	want := map[string]struct {
		requests, errors int
		lastError        string
	}{
		"add":             {3, 2, "400:"},
		"modify":          {1, 1, "404:"},
		"delete":          {0, 0, ""},
		"unknown-command": {1, 1, `404:unknown command "rename"`},
		"unknown-query":   {1, 1, `404:unknown query "everything"`},
		"shadow":          {1, 0, ""},
		"pending":         {0, 0, ""},
	}
	check := func(how string, stats micro.Stats, info micro.Info) {
		t.Helper()
		if stats.Name != "shadowbridge" || stats.Type != micro.StatsResponseType || info.Type != micro.InfoResponseType {
			t.Fatalf("%s: not shadowbridge's stats and info: %+v %+v", how, stats.ServiceIdentity, info.ServiceIdentity)
		}
		got := map[string]*micro.EndpointStats{}
		for _, s := range stats.Endpoints {
			got[s.Name] = s
		}
		for name, w := range want {
			s := got[name]
			if s == nil || s.NumRequests != w.requests || s.NumErrors != w.errors || !strings.HasPrefix(s.LastError, w.lastError) {
				t.Errorf("%s: endpoint %s: %+v, want %d requests, %d errors, last error %q...", how, name, s, w.requests, w.errors, w.lastError)
			}
		}
		if got["add"] != nil && got["add"].AverageProcessingTime <= 0 {
			t.Errorf("%s: add has no processing time: %+v", how, got["add"])
		}
		subjects := map[string]string{}
		for _, ep := range info.Endpoints {
			subjects[ep.Name] = ep.Subject
			if ep.QueueGroup != "shadowbridge" {
				t.Errorf("%s: endpoint %s in queue group %q", how, ep.Name, ep.QueueGroup)
			}
		}
		for _, v := range natsapi.CommandVerbs {
			if subjects[v] != "prov.cmd.*."+v {
				t.Errorf("%s: verb %s listed with subject %q", how, v, subjects[v])
			}
		}
		for _, q := range natsapi.QueryNames {
			if subjects[q] != "prov.query."+q {
				t.Errorf("%s: query %s listed with subject %q", how, q, subjects[q])
			}
		}
	}

	var stats micro.Stats
	var info micro.Info
	for subject, v := range map[string]any{"$SRV.STATS.shadowbridge": &stats, "$SRV.INFO.shadowbridge": &info} {
		m, err := e.nc.Request(subject, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(m.Data, v); err != nil {
			t.Fatalf("%s: %v: %s", subject, err, m.Data)
		}
	}
	check("$SRV", stats, info)

	nats := natsCLI(t)
	cli := func(v any, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), nats, append([]string{"--server", e.srv.ClientURL(), "--no-context"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("nats %s: %v: %s", strings.Join(args, " "), err, stderrOf(err))
		}
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("nats %s: %v:\n%s", strings.Join(args, " "), err, out)
		}
	}
	var cliStats []micro.Stats
	cli(&cliStats, "micro", "stats", "shadowbridge", "--json")
	cli(&info, "micro", "info", "shadowbridge", "--json")
	if len(cliStats) != 1 {
		t.Fatalf("nats micro stats: %d instances, want 1", len(cliStats))
	}
	check("nats micro", cliStats[0], info)
}

// natsCLI is the path of the nats CLI that deployments/natscli/install.sh installs; the test
// skips without it, or fails when SHADOWBRIDGE_REQUIRE_NATSCLI=1 (as the suite's task sets).
func natsCLI(t *testing.T) string {
	t.Helper()
	path, _ := filepath.Abs(filepath.Join("..", "..", "..", "deployments", "natscli", "bin", "nats"))
	if _, err := os.Stat(path); err != nil {
		msg := "the nats CLI is not installed (deployments/natscli/install.sh)"
		if os.Getenv("SHADOWBRIDGE_REQUIRE_NATSCLI") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
