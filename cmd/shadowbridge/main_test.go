package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startDev runs `shadowbridge dev` on free ports and returns its NATS and dashboard URLs.
func startDev(t *testing.T, dir string) (natsURL, httpURL string, stop func()) {
	t.Helper()
	return startDevEnv(t, dir, func(string) string { return "" })
}

// startDevEnv is startDev with an environment.
func startDevEnv(t *testing.T, dir string, getenv func(string) string) (natsURL, httpURL string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	out, errb := &syncBuf{}, &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data", dir, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0"}, getenv, out, errb)
	}()
	re := regexp.MustCompile(`NATS:\s+(\S+)\s+dashboard:\s+(\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			natsURL, httpURL = m[1], m[2]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("dev exited: %v\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return natsURL, httpURL, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev stopped with %v", err)
			}
			if !strings.Contains(out.String(), "shutting down") {
				t.Error("no clean shutdown message")
			}
		case <-time.After(20 * time.Second):
			t.Error("dev did not stop")
		}
	}
}

func client(t *testing.T, natsURL string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, func(k string) string {
		if k == "NATS_URL" {
			return natsURL
		}
		return ""
	}, &out, &errb)
	return out.String(), err
}

func TestDevEndToEndAndRestart(t *testing.T) {
	dir := t.TempDir()
	natsURL, httpURL, stop := startDev(t, dir)
	out, err := client(t, natsURL, "add", "-o", "json", "demo", "login=jack", "fullName=Jack Sparrow", "shoeSize:=42", "--request-id", "r1")
	if err != nil {
		t.Fatal(err)
	}
	var reply map[string]string
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		t.Fatalf("add output %q: %v", out, err)
	}
	id := reply["shadowId"]
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err = client(t, natsURL, "get", "-o", "json", id)
		if err == nil && strings.Contains(out, `"lifecycleState": "live"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not live: %s %v", out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !regexp.MustCompile(`"shoeSize": \[\s*42\s*\]`).MatchString(out) {
		t.Fatalf("shoe size not a number:\n%s", out)
	}
	// --as-of takes what audit's --since takes: a duration ago (the shadow did not exist an hour
	// ago), a date (tomorrow's: the shadow as it is).
	if _, err := client(t, natsURL, "get", "-o", "json", id, "--as-of", "1h"); err == nil || !strings.Contains(err.Error(), "(status 404)") {
		t.Fatalf("get --as-of 1h: %v", err)
	}
	if then, err := client(t, natsURL, "get", "-o", "json", id, "--as-of", time.Now().AddDate(0, 0, 2).Format(time.DateOnly)); err != nil || !strings.Contains(then, `"lifecycleState": "live"`) {
		t.Fatalf("get --as-of a date: %v\n%s", err, then)
	}
	if _, err := client(t, natsURL, "modify", "-o", "json", "demo", "--id", "login=jack", "fullName=Jack SPARROW", "group+=pirates"); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t, natsURL, "add", "-o", "json", "demo", "login=jack"); err == nil || !strings.Contains(err.Error(), "(status 409)") {
		t.Fatalf("duplicate login: %v", err)
	}
	if _, err := client(t, natsURL, "add", "-o", "json", "nowhere", "login=x"); err == nil || !strings.HasSuffix(err.Error(), "(status 404)") {
		t.Fatalf("unknown resource: %v", err)
	}
	hist, err := client(t, natsURL, "history", id)
	if err != nil || !strings.Contains(hist, "AddRequested") || !strings.Contains(hist, "ModifyRequested") {
		t.Fatalf("history: %v\n%s", err, hist)
	}
	jl, err := client(t, natsURL, "history", id, "--json")
	if err != nil || strings.Count(jl, "\n") < 4 || !strings.HasPrefix(jl, `{"seq":`) {
		t.Fatalf("history --json: %v\n%s", err, jl)
	}
	if out, err := client(t, natsURL, "pending", "--json"); err != nil || !strings.Contains(out, `"shadows"`) {
		t.Fatalf("pending: %v %s", err, out)
	}
	if out, err := client(t, natsURL, "refresh", "-o", "json", "demo"); err != nil || !strings.Contains(out, `"refreshed"`) {
		t.Fatalf("refresh: %v %s", err, out)
	}
	if out, err := client(t, natsURL, "maintenance", "-o", "json", "demo", "on", "--reason", "patching"); err != nil || !strings.Contains(out, `"administrativeAvailabilityStatus": "maintenance"`) {
		t.Fatalf("maintenance on: %v %s", err, out)
	}
	if out, err := client(t, natsURL, "resource", "-o", "json", "demo"); err != nil || !strings.Contains(out, `"reason": "patching"`) {
		t.Fatalf("resource: %v %s", err, out)
	}
	if out, err := client(t, natsURL, "maintenance", "-o", "json", "demo", "off"); err != nil || !strings.Contains(out, `"administrativeAvailabilityStatus": "operational"`) {
		t.Fatalf("maintenance off: %v %s", err, out)
	}
	if out, err := client(t, natsURL, "rebuild"); err != nil || !strings.Contains(out, "rebuilt 1 shadow,") {
		t.Fatalf("rebuild: %v %s", err, out)
	}
	resp, err := http.Get(httpURL + "healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Fatalf("healthz body %q", body)
	}
	stop()

	// Same data dir: the shadow, its login claim and the request id survive.
	natsURL, _, stop = startDev(t, dir)
	defer stop()
	out, err = client(t, natsURL, "get", "-o", "json", id)
	if err != nil || !strings.Contains(out, "Jack SPARROW") {
		t.Fatalf("after restart: %v\n%s", err, out)
	}
	again, err := client(t, natsURL, "add", "-o", "json", "demo", "login=jack", "fullName=Jack Sparrow", "shoeSize:=42", "--request-id", "r1")
	if err != nil || !strings.Contains(again, id) {
		t.Fatalf("request id after restart: %v %s", err, again)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"serve"}, {"add"}, {"modify", "demo"}, {"add", "demo", "login"}, {"add", "demo", "x:=notjson"}, {"maintenance", "demo"}, {"maintenance", "demo", "maybe"}, {"resource"}} {
		if _, err := client(t, "nats://127.0.0.1:1", args...); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	_, err := client(t, "nats://127.0.0.1:1", "get", "00000000-0000-4000-8000-000000000000", "--timeout", "500ms")
	if err == nil || !strings.Contains(err.Error(), "connect to NATS") {
		t.Fatalf("no server: %v", err)
	}
}

// A second dev on the same data directory is refused with a clear message, not started beside
// the first on the same JetStream files.
func TestSecondDevOnSameDataIsRefused(t *testing.T) {
	dir := t.TempDir()
	_, _, stop := startDev(t, dir)
	defer stop()
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"dev", "--data", dir, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0"}, func(string) string { return "" }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "is used by process") || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("second dev: %v", err)
	}
}

// `shadowbridge verify` beside a running dev: clean, then a deleted projection entry makes it
// print the violation and exit non-zero.
func TestVerifyCommand(t *testing.T) {
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	out, err := client(t, natsURL, "add", "-o", "json", "demo", "login=verify")
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ ShadowID string }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	kv := projectionKV(t, natsURL)
	// The add is done (sent, confirmed, projected) before the entry is deleted: a commit still
	// to come would write the entry again.
	deadline := time.Now().Add(20 * time.Second)
	for {
		e, err := kv.Get(t.Context(), "demo."+r.ShadowID)
		if err == nil && strings.Contains(string(e.Value()), `"lifecycleState":"live"`) && !regexp.MustCompile(`"executionStatus":"(requested|executionPending|executing)"`).Match(e.Value()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the add did not become live: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		out, err = client(t, natsURL, "verify", "--recheck", "2s")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("verify of a healthy dev: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "0 violations") {
		t.Fatalf("verify: %s", out)
	}
	if err := kv.Delete(t.Context(), "demo."+r.ShadowID); err != nil {
		t.Fatal(err)
	}
	out, err = client(t, natsURL, "verify", "--recheck", "200ms")
	if err == nil || !strings.Contains(err.Error(), "1 violations") || !strings.Contains(out, "VIOLATION [projection] demo "+r.ShadowID) {
		t.Fatalf("verify after a deleted projection entry: %v\n%s", err, out)
	}
	// --json: camelCase, with the counts.
	out, _ = client(t, natsURL, "verify", "--recheck", "200ms", "--json")
	var rep struct {
		Records, Shadows, Violations, Notices int
		LastSeq                               uint64 `json:"lastSeq"`
		Findings                              []struct{ Check, ShadowID string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Violations != 1 || rep.Records == 0 || rep.LastSeq == 0 ||
		len(rep.Findings) == 0 || rep.Findings[0].Check != "projection" || !strings.Contains(out, `"indexEntries"`) {
		t.Fatalf("verify --json: %v %+v\n%s", err, rep, out)
	}
}

// dev keeps its JetStream files where the configuration's nats.embedded.storeDir says, unless
// --data names another directory.
func TestDevUsesTheConfiguredStoreDir(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	cfgFile := filepath.Join(t.TempDir(), "dev.yaml")
	if err := os.WriteFile(cfgFile, []byte(`
nats: {embedded: {storeDir: "`+store+`"}}
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {sample: {}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	out, errb := &syncBuf{}, &syncBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--config", cfgFile, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0"}, func(string) string { return "" }, out, errb)
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "data:"); {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s\n%s", out.String(), errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "data:      "+store) {
		t.Fatalf("dev's data directory is not the configured storeDir %s:\n%s", store, out.String())
	}
	if entries, err := os.ReadDir(store); err != nil || len(entries) == 0 {
		t.Fatalf("nothing stored in %s: %v", store, err)
	}
}
