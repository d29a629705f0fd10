package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/eventstore/natstest"
)

// TestMain lets a test re-execute this binary as the real shadowbridge process (to kill it).
func TestMain(m *testing.M) {
	if os.Getenv("SHADOWBRIDGE_TEST_MAIN") == "1" {
		ctx, stop := signalContext()
		err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "shadowbridge:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startServe(t *testing.T, cfgFile string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "serve", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "SHADOWBRIDGE_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// The service is SIGKILLed while requests flow to the broker and restarted: every accepted
// operation reaches the broker; duplicates are re-sends with the same message-id.
func TestServiceKilledMidStream(t *testing.T) {
	b := amqptest.Start(t)
	q := b.Queue(t, "kill")
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	cfgFile := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, `
nats: {url: %q}
http: {listen: "127.0.0.1:0"}
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {url: %q, address: %q}}
`, srv.ClientURL(), b.URL, q), 0o600); err != nil {
		t.Fatal(err)
	}
	r := b.Receiver(t, q)
	var mu sync.Mutex
	got := map[string]int{}
	go func() {
		for {
			m, err := r.Receive(context.Background(), nil)
			if err != nil {
				return
			}
			_ = r.AcceptMessage(context.Background(), m)
			id, _ := m.Properties.MessageID.(amqp.UUID)
			mu.Lock()
			got[id.String()]++
			mu.Unlock()
		}
	}()
	addN := func(from, to int) []string {
		var ops []string
		for i := from; i < to; i++ {
			body := fmt.Sprintf(`{"objectClass":"AccountObjectClass","attributes":{"login":["k%d"]}}`, i)
			var m *nats.Msg
			var err error
			for range 100 { // the service may still be starting
				if m, err = nc.Request("prov.cmd.fs.add", []byte(body), 5*time.Second); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
				t.Fatalf("add %d: %v %s", i, err, m.Data)
			}
			var rep struct{ OperationID string }
			_ = json.Unmarshal(m.Data, &rep)
			ops = append(ops, rep.OperationID)
		}
		return ops
	}
	cmd := startServe(t, cfgFile)
	ops := addN(0, 200)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil { // mid-stream: sends are in flight
		t.Fatal(err)
	}
	_ = cmd.Wait()
	startServe(t, cfgFile)
	ops = append(ops, addN(200, 300)...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		missing := 0
		for _, op := range ops {
			if got[op] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d operations never reached the broker", missing, len(ops))
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	dups := 0
	for op, n := range got {
		dups += n - 1
		if !contains(ops, op) {
			t.Errorf("unknown message-id %s", op)
		}
	}
	mu.Unlock()
	t.Logf("%d operations across a SIGKILL, %d duplicates (same message-id)", len(ops), dups)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
