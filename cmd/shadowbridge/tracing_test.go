package main

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// With the standard OTLP environment variables, dev exports its spans over OTLP/HTTP: an add
// carrying a traceparent reaches the collector in the IDM's trace. Without them nothing is
// exported (tracing is off by default).
func TestOTLPExportFromEnvironment(t *testing.T) {
	var mu sync.Mutex
	var posts [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, body)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
	natsURL, _, stop := startDevEnv(t, t.TempDir(), func(k string) string { return env[k] })
	const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msg := nats.NewMsg("prov.cmd.demo.add")
	msg.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	msg.Data = []byte(`{"objectClass":"AccountObjectClass","attributes":{"login":["otlp"]}}`)
	if _, err := nc.RequestMsg(msg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the sample target confirm
	stop()                             // the provider's shutdown flushes the batch
	raw, _ := hex.DecodeString(traceID)
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, p := range posts {
		found = found || bytes.Contains(p, raw)
	}
	if !found {
		t.Fatalf("no export in trace %s (%d posts)", traceID, len(posts))
	}

	// Off by default.
	posts = nil
	mu.Unlock()
	natsURL, _, stop = startDev(t, t.TempDir())
	nc2, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	msg.Data = []byte(`{"objectClass":"AccountObjectClass","attributes":{"login":["off"]}}`)
	if _, err := nc2.RequestMsg(msg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	mu.Lock()
	if len(posts) != 0 {
		t.Fatalf("exported without the OTLP environment: %d posts", len(posts))
	}
}
