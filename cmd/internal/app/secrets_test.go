package app_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/app"
	"shadowbridge/eventstore/natstest"
)

const canary = "s3cr3t-canary-7f1d"

// Malformed broker and NATS URLs are refused when the configuration is read, naming the field
// and never the password they carry.
func TestMalformedURLsAreRefusedWithoutTheSecret(t *testing.T) {
	for _, c := range []struct{ yaml, field string }{
		{"nats: {url: 'nats://user:" + canary + "@[::1'}\n" + resourceYAML("amqp://127.0.0.1:5672"), "nats.url"},
		{resourceYAML("amqp://user:" + canary + "@[::1/"), "target.amqp.url"},
		{resourceYAML("http://user:" + canary + "@broker:5672"), "target.amqp.url"},
		{resourceYAML("amqp://user:" + canary + "@"), "target.amqp.url"},
	} {
		cfg, err := app.Parse([]byte(c.yaml))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil {
			t.Fatalf("accepted:\n%s", c.yaml)
		}
		if strings.Contains(err.Error(), canary) || !strings.Contains(err.Error(), c.field) {
			t.Fatalf("error %q: must name %s and not the password", err, c.field)
		}
	}
}

func resourceYAML(url string) string {
	return `resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: '` + url + `', address: requests, username: shadow, password: '` + canary + `'}}
`
}

// lockedBuffer is a log sink shared by the app's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A broker password (in the URL and in the password field) never reaches a log line, an error
// reply, the event log, the projection, /metrics or the dashboard, while the broker is failing
// and every error path runs.
func TestCredentialsNeverLeave(t *testing.T) {
	closed := natstest.FreeAddr(t) // nothing listens there: every attempt fails
	cfg, err := app.Parse([]byte(resourceYAML("amqp://shadow:" + canary + "@" + closed)))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Resources[0].Consistency.OperationRetryMaxAttempts = ptr(2)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	a, err := app.Start(t.Context(), nc, cfg, app.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	e := &env{srv: srv, nc: nc, app: a}
	id := e.ok(t, "prov.cmd.fs.add", map[string]any{"objectClass": "AccountObjectClass", "attributes": map[string]any{"login": []any{"jack"}}})["shadowId"].(string)
	// The attempt fails (and is recorded with its error) before anything is read back.
	var lastError string
	waitFor(t, "a failed attempt recorded", 20*time.Second, func() bool {
		st, _, err := a.Store.Load(t.Context(), "fs", id)
		if err != nil || len(st.Data().PendingOperations) == 0 {
			return false
		}
		if le := st.Data().PendingOperations[0].LastError; le != nil {
			lastError = le.Message
		}
		return lastError != ""
	})
	_, _ = e.call(t, "prov.cmd.fs.refresh", map[string]any{"shadowId": id, "forceRetry": true})
	var seen []string
	seen = append(seen, "lastError: "+lastError, "logs: "+logs.String())
	for _, q := range []struct {
		subject string
		body    any
	}{
		{"prov.query.shadow", map[string]any{"shadowId": id}},
		{"prov.query.history", map[string]any{"shadowId": id}},
		{"prov.query.explain", map[string]any{"shadowId": id}},
		{"prov.query.resource", map[string]any{"resource": "fs"}},
		{"prov.query.pending", map[string]any{}},
		{"prov.cmd.fs.modify", map[string]any{"shadowId": id, "changes": map[string]any{"x": map[string]any{"replace": []any{"y"}}}}},
	} {
		r, code := e.call(t, q.subject, q.body)
		seen = append(seen, fmt.Sprintf("%s (%s): %v", q.subject, code, r))
	}
	h := httptest.NewServer(a.Handler())
	defer h.Close()
	for _, path := range []string{"/metrics", "/api/dashboard", "/api/pending", "/api/shadow/" + id, "/readyz"} {
		_, body := get(t, h.URL+path)
		seen = append(seen, path+": "+body)
	}
	// Every byte stored in JetStream: the event log, the projection, the index.
	js, _ := jetstream.New(nc)
	for name := range js.StreamNames(t.Context()).Name() {
		s, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := s.Info(t.Context())
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(t.Context(), seq)
			if err != nil {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s #%d: %s %v", name, seq, m.Data, m.Header))
		}
	}
	all := strings.Join(seen, "\n")
	if strings.Contains(all, canary) {
		for _, s := range seen {
			if strings.Contains(s, canary) {
				t.Errorf("the password leaked: %.400s", s)
			}
		}
	}
	// The test saw the failure paths it claims to cover.
	if !strings.Contains(logs.String(), "connection failed") || !strings.Contains(all, "connection refused") {
		t.Fatalf("no broker failure was exercised:\n%s", logs.String())
	}
}

func ptr[T any](v T) *T { return &v }
