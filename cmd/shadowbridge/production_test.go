package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/eventstore/natstest"
)

// The production example (deployments/production/up.sh) as a user starts it: three NATS nodes
// with TLS for clients and routes, Artemis with its acceptor TLS-only, three serve instances with
// their secrets in a credentials directory, and the JMS target system over TLS. An IDM client
// adds an account over TLS; it goes through Artemis to the target and comes back live with the
// uid the target gave; the broker refuses a connection without TLS.
func TestProductionExample(t *testing.T) {
	for _, tool := range []string{"java", "keytool", "openssl", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("SHADOWBRIDGE_REQUIRE_AMQP") == "1" {
				t.Fatalf("%s is missing (deployments/artemis/test-broker.sh installs it): %v", tool, err)
			}
			t.Skipf("%s is missing: %v", tool, err)
		}
	}
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	state := t.TempDir()
	seen := map[string]bool{}
	port := func() string {
		for {
			a := natstest.FreeAddr(t)
			if p := a[strings.LastIndexByte(a, ':')+1:]; !seen[p] {
				seen[p] = true
				return p
			}
		}
	}
	ports := func(n int) []string {
		var ps []string
		for range n {
			ps = append(ps, port())
		}
		return ps
	}
	natsPorts, routePorts, httpPorts, artemisPort := ports(3), ports(3), ports(3), port()
	env := append(os.Environ(), "SHADOWBRIDGE_CLUSTER_DIR="+state,
		"SHADOWBRIDGE_EXAMPLE_NATS_PORTS="+strings.Join(natsPorts, " "), "SHADOWBRIDGE_EXAMPLE_ROUTE_PORTS="+strings.Join(routePorts, " "),
		"SHADOWBRIDGE_EXAMPLE_HTTP_PORTS="+strings.Join(httpPorts, " "), "SHADOWBRIDGE_EXAMPLE_ARTEMIS_PORT="+artemisPort,
		"IDM_NATS_PASSWORD=example-idm")
	upsh := func(ctx context.Context, action string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "deployments", "production", "up.sh"), action)
		cmd.Env, cmd.Dir = env, root
		return cmd.CombinedOutput()
	}
	t.Cleanup(func() {
		if out, err := upsh(context.Background(), "stop"); err != nil {
			t.Errorf("up.sh stop: %v\n%s", err, out)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	if out, err := upsh(ctx, "start"); err != nil {
		logs, _ := filepath.Glob(filepath.Join(state, "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, tail(string(b), 2000))
		}
		t.Fatalf("up.sh start: %v\n%s", err, out)
	}
	var urls []string
	for _, p := range natsPorts {
		urls = append(urls, "tls://127.0.0.1:"+p)
	}
	idm := []string{"--server", strings.Join(urls, ","), "--tls-ca", filepath.Join(state, "tls", "ca.pem"), "--user", "idm", "--password", "example-idm"}
	out, err := client(t, "", append([]string{"add", "filesystem", "login=anne", "-o", "json"}, idm...)...)
	if err != nil {
		t.Fatalf("add over TLS: %v", err)
	}
	var r map[string]string
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("add: %v\n%s", err, out)
	}
	var got string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		got, err = client(t, "", append([]string{"get", r["shadowId"], "-o", "json"}, idm...)...)
		if err == nil && strings.Contains(got, `"lifecycleState": "live"`) && strings.Contains(got, `"jms-`) {
			break
		}
		if time.Now().After(deadline) {
			target, _ := os.ReadFile(filepath.Join(state, "target.log"))
			serve, _ := os.ReadFile(filepath.Join(state, "serve1.log"))
			t.Fatalf("the account never came back live from the target: %v\n%s\ntarget:\n%s\nserve1:\n%s", err, got, tail(string(target), 2000), tail(string(serve), 3000))
		}
	}
	if target, _ := os.ReadFile(filepath.Join(state, "target.log")); !strings.Contains(string(target), r["operationId"]) {
		t.Fatalf("the target system's log does not have operation %s:\n%s", r["operationId"], target)
	}
	// TLS only: a client without it does not get in.
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	if conn, err := amqp.Dial(dctx, "amqp://127.0.0.1:"+artemisPort, &amqp.ConnOptions{SASLType: amqp.SASLTypePlain("shadowbridge", "x")}); err == nil {
		conn.Close()
		t.Fatal("Artemis took a connection without TLS")
	}
	// A client without TLS is refused by NATS too.
	if _, err := client(t, "", "get", r["shadowId"], "--server", strings.ReplaceAll(urls[0], "tls://", "nats://"), "--user", "idm", "--password", "example-idm", "--timeout", "2s"); err == nil {
		t.Fatal("NATS served a client without TLS")
	}
	for _, p := range httpPorts {
		if _, err := client(t, "", "health", "--url", fmt.Sprintf("http://127.0.0.1:%s/readyz", p)); err != nil {
			t.Errorf("instance on %s not ready: %v", p, err)
		}
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
