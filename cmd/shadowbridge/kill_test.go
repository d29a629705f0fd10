package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

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

var (
	procsMu sync.Mutex
	procs   []*exec.Cmd
)

// killAll SIGKILLs every serve process started so far.
func killAll(t *testing.T) {
	procsMu.Lock()
	defer procsMu.Unlock()
	for _, c := range procs {
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
	}
	procs = nil
}

func startServe(t *testing.T, cfgFile string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "serve", "--config", cfgFile)
	cmd.Env = append(os.Environ(), "SHADOWBRIDGE_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	procsMu.Lock()
	procs = append(procs, cmd)
	procsMu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// The service is SIGKILLed while requests flow to the broker and restarted: every accepted
// operation reaches the broker; duplicates are re-sends with the same message-id.
func TestServiceKilledMidStream(t *testing.T) {
	for _, b := range amqptest.Matrix(t) {
		t.Run(b.Name, func(t *testing.T) { testServiceKilledMidStream(t, b) })
	}
}

func testServiceKilledMidStream(t *testing.T, b amqptest.Broker) {
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
	// 16 clients add 400 accounts with request ids, retrying (same id) through the outage, so
	// every add is accepted exactly once whatever the kill interrupts.
	addAll := func(n int) []string {
		ops := make([]string, n)
		var wg sync.WaitGroup
		for c := range 16 {
			wg.Go(func() {
				for i := c; i < n; i += 16 {
					body := fmt.Sprintf(`{"requestId":"k%d","objectClass":"AccountObjectClass","attributes":{"login":["k%d"]}}`, i, i)
					for attempt := 0; ; attempt++ {
						m, err := nc.Request("prov.cmd.fs.add", []byte(body), 5*time.Second)
						if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
							var rep struct{ OperationID string }
							_ = json.Unmarshal(m.Data, &rep)
							ops[i] = rep.OperationID
							break
						}
						if attempt > 400 {
							t.Errorf("add %d never accepted: %v", i, err)
							return
						}
						time.Sleep(25 * time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		return ops
	}
	startServe(t, cfgFile) // two instances share the work: both die
	startServe(t, cfgFile)
	var ops []string
	added := make(chan struct{})
	go func() { ops = addAll(400); close(added) }()
	for { // kill once requests are flowing to the broker
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 60 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Log("SIGKILL")
	killAll(t)
	startServe(t, cfgFile)
	<-added
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
		if !slices.Contains(ops, op) {
			t.Errorf("unknown message-id %s", op)
		}
	}
	mu.Unlock()
	t.Logf("%d operations across a SIGKILL, %d duplicates (same message-id)", len(ops), dups)
}
