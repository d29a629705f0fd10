package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"shadowbridge/cmd/internal/buildinfo"
	"shadowbridge/cmd/internal/cli"
	"shadowbridge/domain"
)

// Every verb answers --help with its own usage line and only its own flags, on stdout, exit 0.
func TestHelpPerVerb(t *testing.T) {
	for _, v := range verbTable() {
		for _, form := range []string{"--help", "-h"} {
			var out, errb bytes.Buffer
			err := run(t.Context(), []string{v.name, form}, func(string) string { return "" }, &out, &errb)
			if err != nil {
				t.Errorf("%s %s: %v", v.name, form, err)
				continue
			}
			help := out.String()
			if !strings.HasPrefix(help, "usage: shadowbridge "+v.name) && v.name != "help" {
				t.Errorf("%s %s: no usage line:\n%s", v.name, form, help)
			}
			if errb.Len() != 0 {
				t.Errorf("%s %s: wrote to stderr: %s", v.name, form, errb.String())
			}
		}
	}
	help := func(verb string) string {
		var out bytes.Buffer
		if err := run(t.Context(), []string{verb, "--help"}, func(string) string { return "" }, &out, &out); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	for _, c := range []struct {
		verb       string
		has, hasnt []string
	}{
		{"add", []string{"--object-class", "--request-id", "RESOURCE attr=value", "connection flags:", "--server", "--output"}, []string{"--as-of", "--force", "--result", "--reason"}},
		{"get", []string{"--as-of", "SHADOW"}, []string{"--object-class", "--request-id", "--force"}},
		{"pending", []string{"--output", "--json", "--resource"}, []string{"--as-of", "--object-class"}},
		{"dev", []string{"--data", "--nats", "--http"}, []string{"--server", "connection flags:"}},
		{"audit", []string{"--since", "--operation", "--server"}, []string{"--as-of", "--force"}},
	} {
		h := help(c.verb)
		for _, s := range c.has {
			if !strings.Contains(h, s) {
				t.Errorf("%s --help lacks %q:\n%s", c.verb, s, h)
			}
		}
		for _, s := range c.hasnt {
			if strings.Contains(h, s) {
				t.Errorf("%s --help shows another verb's %q:\n%s", c.verb, s, h)
			}
		}
	}
	// `help VERB` is `VERB --help`; a flag after "--" is an argument, not a help request.
	var out bytes.Buffer
	if err := run(t.Context(), []string{"help", "modify"}, func(string) string { return "" }, &out, &out); err != nil || !strings.HasPrefix(out.String(), "usage: shadowbridge modify") {
		t.Fatalf("help modify: %v\n%s", err, out.String())
	}
	if wantsHelp([]string{"demo", "--", "--help"}) {
		t.Fatal("--help after -- counted as a help request")
	}
}

func TestUnknownVerbSuggests(t *testing.T) {
	for _, c := range []struct{ typed, want string }{{"ad", "add"}, {"pendng", "pending"}, {"modfy", "modify"}, {"histroy", "history"}} {
		_, err := client(t, "nats://127.0.0.1:1", c.typed)
		if err == nil || !strings.Contains(err.Error(), "did you mean "+c.want+"?") {
			t.Errorf("%s: %v, want a suggestion of %s", c.typed, err, c.want)
		}
	}
	if _, err := client(t, "nats://127.0.0.1:1", "xyzzy"); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Errorf("xyzzy: %v, want no suggestion", err)
	}
}

// The bash script completes verbs and a verb's flags, in a real bash.
func TestCompletionBash(t *testing.T) {
	script, err := client(t, "", "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "completion.bash")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _shadowbridge; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", append([]string{"-c", prog, "bash", file}, words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("shadowbridge", "pen"); got != "pending" {
		t.Errorf("verb completion: %q", got)
	}
	if got := complete("shadowbridge", "get", "--a"); got != "--as-of" {
		t.Errorf("get flags: %q", got)
	}
	if got := complete("shadowbridge", "add", "--req"); got != "--request-id" {
		t.Errorf("add flags: %q", got)
	}
	if got := complete("shadowbridge", "completion", "z"); got != "zsh" {
		t.Errorf("completion shells: %q", got)
	}
	if _, err := client(t, "", "completion", "fish"); err == nil || !strings.Contains(err.Error(), "bash or zsh") {
		t.Errorf("fish: %v", err)
	}
}

// The zsh script loads in a real zsh with compinit and registers the completion.
func TestCompletionZsh(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		if os.Getenv("SHADOWBRIDGE_REQUIRE_ZSH") != "" {
			t.Fatal("zsh not found (run deployments/shells/install-zsh.sh)")
		}
		t.Skip("zsh not installed (deployments/shells/install-zsh.sh)")
	}
	script, err := client(t, "", "completion", "zsh")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "_shadowbridge")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("zsh", "-f", "-c", `autoload -Uz compinit && compinit -u -d "$2" && source "$1" && echo "${_comps[shadowbridge]}"`, "zsh", file, filepath.Join(t.TempDir(), "zcompdump"))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_shadowbridge" {
		t.Fatalf("zsh: %v\n%s", err, out)
	}
}

// dev on a NATS port another process holds fails at once, naming the cause.
func TestDevOnBusyNATSPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	var out, errb bytes.Buffer
	err = run(t.Context(), []string{"dev", "--data", t.TempDir(), "--nats", l.Addr().String(), "--http", "127.0.0.1:0"}, func(string) string { return "" }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("dev on a busy port: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("took %s to fail (the 10-second readiness wait)", d)
	}
}

// pending prints a table a person scans (shadow, login, operations, status, next attempt);
// --json the shadows; audit's table names each event's shadow; errors read as sentences.
func TestPendingTableAndAuditShadowColumn(t *testing.T) {
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	if out, err := client(t, natsURL, "pending"); err != nil || !strings.Contains(out, "no shadow has unfinished operations") {
		t.Fatalf("empty pending: %v\n%s", err, out)
	}
	if _, err := client(t, natsURL, "maintenance", "-o", "json", "demo", "on", "--reason", "test"); err != nil {
		t.Fatal(err)
	}
	out, err := client(t, natsURL, "add", "-o", "json", "demo", "login=held")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.Split(strings.Split(out, `"shadowId": "`)[1], `"`)[0]
	var table string
	deadline := time.Now().Add(15 * time.Second)
	for table == "" || !strings.Contains(table, id) {
		if table, err = client(t, natsURL, "pending"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending table never listed %s:\n%s", id, table)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("pending:\n%s", table)
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "SHADOW") || !strings.Contains(lines[0], "NEXT ATTEMPT") ||
		!strings.Contains(lines[0], "AGE") || !strings.Contains(lines[0], "LAST ERROR") {
		t.Fatalf("pending table:\n%s", table)
	}
	for _, want := range []string{id, "demo", "held", "add"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("pending row lacks %q:\n%s", want, table)
		}
	}
	if js, err := client(t, natsURL, "pending", "--json"); err != nil || !strings.Contains(js, `"pendingOperations"`) {
		t.Fatalf("pending --json: %v\n%s", err, js)
	}
	audit, err := client(t, natsURL, "audit")
	if err != nil || !strings.Contains(audit, "SHADOW") {
		t.Fatalf("audit: %v\n%s", err, audit)
	}
	for _, l := range strings.Split(audit, "\n") {
		if strings.Contains(l, "AddRequested") && !strings.Contains(l, id) {
			t.Errorf("audit row without its shadow: %s", l)
		}
	}
	if _, err := client(t, natsURL, "get", "-o", "json", "00000000-0000-4000-8000-000000000000"); err == nil ||
		err.Error() != "get: shadow not found: 00000000-0000-4000-8000-000000000000 (status 404)" {
		t.Errorf("unknown shadow: %v", err)
	}
}

// version, --version and version --json say which build this is; help lists the verb.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if want := buildinfo.Read().String() + "\n"; out.String() != want || !strings.HasPrefix(want, "shadowbridge "+buildinfo.Version) {
			t.Fatalf("%v: %q, want %q", args, out.String(), want)
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"version", "--json"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var got buildinfo.Info
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got != buildinfo.Read() {
		t.Fatalf("version --json: %s (%v)", out.String(), err)
	}
	if !strings.Contains(usage(), "version ") {
		t.Fatal("help does not list version")
	}
}

// Every error of a verb starts with the verb, and flags are spelled as the usage spells them
// (--name), an unknown one with the closest flag of the verb suggested.
func TestVerbErrorsHaveOneForm(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "--timout", "1s", "x"}, "get: unknown flag --timout (did you mean --timeout?)"},
		{[]string{"get", "--timeout", "soon", "x"}, `get: invalid value "soon" for --timeout: parse error`},
		{[]string{"get", "--as-of"}, "get: --as-of needs a value"},
		{[]string{"audit", "--json=maybe"}, `audit: invalid value "maybe" for --json: want true or false`},
		{[]string{"get", "x", "-o", "yaml"}, `get: invalid value "yaml" for -o: want table or json`},
		{[]string{"pending", "--output", "jsn"}, `pending: invalid value "jsn" for --output: want table or json (did you mean json?)`},
		{[]string{"get"}, "get: missing SHADOW"},
		{[]string{"maintenance", "demo", "maybe"}, `maintenance: "maybe": want on or off`},
		{[]string{"serve"}, "serve: --config FILE is required"},
		{[]string{"get", "x", "--as-of", "yesterday"}, `get: --as-of "yesterday": want an RFC 3339 time, a date (2006-01-02) or a duration ago (90m)`},
		{[]string{"audit", "--result", "succes"}, `audit: --result "succes": want one of success, warning, partial_error, fatal_error, handled_error, not_applicable, released, sent, failed, postponed (did you mean success?)`},
	} {
		var stderr bytes.Buffer
		err := run(t.Context(), c.args, func(string) string { return "" }, io.Discard, &stderr)
		if err == nil || err.Error() != c.want {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
		if e := stderr.String(); strings.Contains(e, "not defined: -") || strings.Contains(e, "for flag -") || strings.Contains(e, "argument: -") {
			t.Errorf("%v: the flag package's own message leaked:\n%s", c.args, stderr.String())
		}
	}
}

// health answers 0 when the service's health endpoint says 200, an error naming the URL otherwise.
func TestHealth(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }))
	defer up.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	env := func(k string) string { return map[string]string{"SHADOWBRIDGE_HEALTH_URL": up.URL + "/healthz"}[k] }
	if err := run(t.Context(), []string{"health"}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("health of a healthy service: %v", err)
	}
	if err := run(t.Context(), []string{"health", "--url", down.URL}, env, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("health of an unhealthy service: %v", err)
	}
	if err := run(t.Context(), []string{"health", "--url", "http://127.0.0.1:1/healthz", "--timeout", "1s"}, env, io.Discard, io.Discard); err == nil ||
		!strings.HasPrefix(err.Error(), "health: http://127.0.0.1:1/healthz") {
		t.Fatalf("health with nothing listening: %v", err)
	}
}

// The pending table says how long the work waits and why the last attempt failed.
func TestPendingTableShowsAgeAndLastError(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	sd := domain.ShadowData{ShadowID: "00000000-0000-4000-8000-000000000001", Resource: "demo", LifecycleState: domain.LifecycleConceived,
		SecondaryIdentifiers: domain.Attributes{"login": {"anne"}},
		PendingOperations: []domain.PendingOperation{{ID: "op", Type: domain.TypeRetry, ExecutionStatus: domain.StatusExecuting,
			Delta: domain.Delta{ChangeType: domain.ChangeAdd}, AttemptNumber: 1, RequestTimestamp: now.Add(-2 * time.Minute),
			LastAttemptTimestamp: now.Add(-time.Minute), LastError: &domain.OperationError{Category: domain.CategoryCommunication, Message: "connection refused"}}}}
	raw, _ := json.Marshal(sd)
	var out bytes.Buffer
	if err := cli.PrintPending([]json.RawMessage{raw}, map[string]time.Time{sd.ShadowID: now.Add(29 * time.Minute)}, now, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"2m0s", "communication: connection refused", "(in 29m0s)", "retry, 1 attempts"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %q:\n%s", want, out.String())
		}
	}
}

// Every verb that prints a result takes one --output table|json (-o; --json is --output json):
// a table for people by default, JSON that parses for programs.
func TestEveryVerbPrintsATableOrJSON(t *testing.T) {
	for _, v := range verbTable() {
		if slices.Contains([]string{"dev", "serve", "completion", "health", "help"}, v.name) {
			continue
		}
		var out bytes.Buffer
		if err := run(t.Context(), []string{v.name, "--help"}, func(string) string { return "" }, &out, &out); err != nil || !strings.Contains(out.String(), "-output") {
			t.Errorf("%s --help has no --output: %v\n%s", v.name, err, out.String())
		}
	}
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	addJSON, err := client(t, natsURL, "add", "demo", "login=tabled", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]string
	if err := json.Unmarshal([]byte(addJSON), &r); err != nil || r["shadowId"] == "" {
		t.Fatalf("add -o json: %v\n%s", err, addJSON)
	}
	id := r["shadowId"]
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, _ := client(t, natsURL, "get", id, "--json"); strings.Contains(out, `"lifecycleState": "live"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never live", id)
		}
	}
	jsonLines := func(s string) bool {
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			if !json.Valid([]byte(l)) {
				return false
			}
		}
		return true
	}
	for _, c := range []struct {
		args  []string
		table string // in the table, not in the JSON
		lines bool   // JSON lines rather than one document
	}{
		{[]string{"add", "demo", "login=tabled2", "--request-id", "tab2"}, "SHADOW  ", false},
		{[]string{"modify", "demo", id, "fullName=T"}, "EXECUTION", false},
		{[]string{"get", id}, "attributes:", false},
		{[]string{"refresh", "demo"}, "refreshed ", false},
		{[]string{"resource", "demo"}, "administrative status", false},
		{[]string{"pending"}, "", false},
		{[]string{"history", id}, "EVENT", true},
		{[]string{"explain", id}, "because", false},
		{[]string{"reconcile", "demo"}, "--wait follows it", false},
		{[]string{"audit", "--resource", "demo"}, "OUTCOME", true},
		{[]string{"verify"}, "verified ", false},
		{[]string{"version"}, "shadowbridge ", false},
	} {
		table, err := client(t, natsURL, c.args...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if json.Valid([]byte(table)) || (c.table != "" && !strings.Contains(table, c.table)) {
			t.Errorf("%v: not the table (want %q):\n%s", c.args, c.table, table)
		}
		for _, flag := range [][]string{{"-o", "json"}, {"--output=json"}, {"--json"}} {
			out, err := client(t, natsURL, append(slices.Clone(c.args), flag...)...)
			if err != nil {
				t.Fatalf("%v %v: %v", c.args, flag, err)
			}
			if ok := json.Valid([]byte(out)) || (c.lines && jsonLines(out)); !ok || (c.table != "" && strings.Contains(out, c.table)) {
				t.Errorf("%v %v: not JSON:\n%s", c.args, flag, out)
			}
		}
	}
	if out, err := client(t, natsURL, "maintenance", "demo", "on", "--reason", "tables"); err != nil || !strings.Contains(out, "maintenance") || json.Valid([]byte(out)) {
		t.Errorf("maintenance on: %v\n%s", err, out)
	}
}
