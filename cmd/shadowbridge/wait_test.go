package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shadowbridge/eventstore/natstest"
)

// serve started before its NATS cluster waits for it instead of exiting: while no node is up it
// retries the connection, while one node of three is up it retries starting (JetStream has no
// leader yet), and /readyz says which all along (503) while /healthz says it is alive; once the
// cluster has formed it serves, and it stops cleanly on the signal.
func TestServeWaitsForNATS(t *testing.T) {
	plan := natstest.ClusterPlan(t, 3)
	httpAddr := natstest.FreeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, `
nats: {url: %q, replicas: 3}
http: {listen: %q}
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {sample: {}}
`, natstest.URLs(plan), httpAddr), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuf
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", cfgFile}, func(string) string { return "" }, &out, &out)
	}()
	stopped := false
	defer func() {
		cancel()
		if stopped {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve stopped with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	}()

	readyz := func() (int, string) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(what string, ok func(int, string) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, body := readyz()
			if ok(code, body) {
				return
			}
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("serve exited while %s: %v\n%s", what, err, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d %q\n%s", what, code, body, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady("no node up", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "connect to NATS")
	})
	if resp, err := http.Get("http://" + httpAddr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz while waiting: %v %v", resp, err)
	}
	natstest.StartNode(t, plan[0])
	waitReady("one node of three up", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "start the service")
	})
	natstest.StartNode(t, plan[1])
	natstest.StartNode(t, plan[2])
	waitReady("the cluster formed", func(code int, _ string) bool { return code == http.StatusOK })
	if !strings.Contains(out.String(), "waiting for NATS") {
		t.Fatalf("the wait was not logged:\n%s", out.String())
	}
}
