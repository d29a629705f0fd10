package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/eventstore/natstest"
)

// TestMain lets a test re-execute this binary as the real shadowbridge process (to kill it).
func TestMain(m *testing.M) {
	// The CLI writes local times: the tests read them in a zone that is not UTC, whatever the
	// machine's.
	natstest.RunInZone(natstest.TestZone)
	natstest.ServeIfAsked() // a NATS server of its own, to be killed and restarted (natsNode)
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

func startServe(t *testing.T, cfgFile string) *exec.Cmd { return serveWith(t, cfgFile, os.Stderr) }

// serveWith starts `shadowbridge serve` as a process of its own (to be killed), its output to out,
// with extra environment (SHADOWBRIDGE_FAULT=..., say).
func serveWith(t *testing.T, cfgFile string, out io.Writer, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "serve", "--config", cfgFile)
	cmd.Env = append(append(os.Environ(), "SHADOWBRIDGE_TEST_MAIN=1"), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	procsMu.Lock()
	procs = append(procs, cmd)
	procsMu.Unlock()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// retryingConfig writes a serve configuration for resource fs on the broker at url whose
// operations retry every second, for as long as a fault test needs, and returns its path.
func retryingConfig(t *testing.T, natsURL, url, address string) string {
	f := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(f, fmt.Appendf(nil, `
nats: {url: %q}
http: {listen: "127.0.0.1:0"}
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {url: %q, address: %q, maxBackoff: 500ms}}
    consistency: {operationRetryPeriod: 1s, operationRetryMaxAttempts: 1000}
`, natsURL, url, address), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// countMessages accepts everything arriving on r and counts it by message-id (the operation id).
func countMessages(r *amqp.Receiver) (snapshot func() map[string]int) {
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
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(got)
	}
}

// waitAllReceived waits until every operation has reached the broker at least once (calling
// nudge, when set, between looks) and returns the counts.
func waitAllReceived(t *testing.T, received func() map[string]int, ops []string, within time.Duration, nudge func()) map[string]int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := received()
		missing := 0
		for _, op := range ops {
			if got[op] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d operations never reached the broker", missing, len(ops))
		}
		if nudge != nil {
			nudge()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSettled waits until nothing more can be on its way to the broker, then returns what
// arrived: the dispatcher has every record of the log acknowledged (each outcome stored, so
// nothing is left to send or re-send) and the receiver's count has stopped moving.
func waitSettled(t *testing.T, nc *nats.Conn, received func() map[string]int) map[string]int {
	t.Helper()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	idle := func() bool {
		c, err := js.Consumer(t.Context(), "PROV_EVENTS", "PROV_DISPATCHER")
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}
	for last := -1; ; {
		got := received()
		total := 0
		for _, k := range got {
			total += k
		}
		if idle() && total == last {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher never settled (%d messages received)", total)
		}
		last = total
		time.Sleep(250 * time.Millisecond)
	}
}

// untilAnswered sends a request, retrying with the same body (so the same request id) through
// outages, until the service answers it without an error; it returns the reply ("" after about
// attempts tries).
func untilAnswered(t *testing.T, nc *nats.Conn, subject, body string, attempts int) string {
	for attempt := 0; ; attempt++ {
		m, err := nc.Request(subject, []byte(body), 5*time.Second)
		if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
			return string(m.Data)
		}
		if attempt > attempts {
			t.Errorf("%s %s never answered: %v", subject, body, err)
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// addMany adds n accounts from 16 clients, each add with its own request id (prefix + i) and
// retried until answered; it returns their operation ids and calls acked after each answer.
func addMany(t *testing.T, nc *nats.Conn, prefix string, n int, acked func()) []string {
	ops := make([]string, n)
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := c; i < n; i += 16 {
				body := fmt.Sprintf(`{"requestId":"%s%d","objectClass":"AccountObjectClass","attributes":{"login":["%s%d"]}}`, prefix, i, prefix, i)
				var rep struct{ OperationID string }
				if json.Unmarshal([]byte(untilAnswered(t, nc, "prov.cmd.fs.add", body, 1000)), &rep) != nil {
					return
				}
				ops[i] = rep.OperationID
				if acked != nil {
					acked()
				}
			}
		})
	}
	wg.Wait()
	return ops
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
	received := countMessages(b.Receiver(t, q))
	startServe(t, cfgFile) // two instances share the work: both die
	startServe(t, cfgFile)
	var ops []string
	added := make(chan struct{})
	// 16 clients add 400 accounts with request ids, retrying (same id) through the outage, so
	// every add is accepted exactly once whatever the kill interrupts.
	go func() { ops = addMany(t, nc, "k", 400, nil); close(added) }()
	for len(received()) < 60 { // kill once requests are flowing to the broker
		time.Sleep(time.Millisecond)
	}
	t.Log("SIGKILL")
	killAll(t)
	startServe(t, cfgFile)
	<-added
	got := waitAllReceived(t, received, ops, 60*time.Second, nil)
	dups := 0
	for op, n := range got {
		dups += n - 1
		if !slices.Contains(ops, op) {
			t.Errorf("unknown message-id %s", op)
		}
	}
	t.Logf("%d operations across a SIGKILL, %d duplicates (same message-id)", len(ops), dups)
}

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// Exactly once at the broker: two instances send a few thousand operations to Apache Artemis;
// each dies by itself right after the broker accepted a message and before the outcome was
// recorded (so re-sends are certain), both are restarted, and the connection is cut mid-stream.
// Afterwards the queue holds exactly one message per operation id, while the services' logs show
// the re-sends that Artemis' duplicate detection (_AMQ_DUPL_ID) dropped.
func TestArtemisExactlyOnceAcrossKillsAndCuts(t *testing.T) {
	b := amqptest.Artemis(t)
	q := b.Queue(t, "exactly-once")
	proxy := amqptest.NewProxy(t, b.HostPort())
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	cfgFile := retryingConfig(t, srv.ClientURL(), b.Via(proxy), q)
	var logs syncBuffer
	// Each faulty instance is replaced by a healthy one when it dies.
	var restarts sync.WaitGroup
	for _, fault := range []string{"before-outcome:300", "before-outcome:700"} {
		cmd := serveWith(t, cfgFile, &logs, "SHADOWBRIDGE_FAULT="+fault)
		restarts.Go(func() {
			_ = cmd.Wait()
			serveWith(t, cfgFile, &logs)
		})
	}
	received := countMessages(b.Receiver(t, q))
	const n = 2000
	var acked atomic.Int64
	var ops []string
	added := make(chan struct{})
	go func() { ops = addMany(t, nc, "x", n, func() { acked.Add(1) }); close(added) }()
	for acked.Load() < n*6/10 {
		time.Sleep(5 * time.Millisecond)
	}
	proxy.Cut()
	time.Sleep(300 * time.Millisecond)
	proxy.Restore()
	<-added
	restarts.Wait()
	waitAllReceived(t, received, ops, 90*time.Second, func() {
		_, _ = nc.Request("prov.cmd.fs.refresh", []byte(`{"forceRetry":true}`), 5*time.Second)
	})
	got := waitSettled(t, nc, received)
	twice := 0
	for op, k := range got {
		if !slices.Contains(ops, op) {
			t.Errorf("unknown message-id %s on the queue", op)
		}
		if k > 1 {
			twice++
		}
	}
	resent := strings.Count(logs.String(), "re-sending a redelivered request")
	t.Logf("%d operations, %d messages on the Artemis queue, %d operations more than once; %d re-sends in the services' logs", n, len(got), twice, resent)
	if twice > 0 || len(got) != n {
		t.Fatalf("%d operations on the queue more than once (%d messages for %d operations)", twice, len(got), n)
	}
	if resent == 0 {
		t.Fatalf("no re-send happened: the test did not exercise duplicate detection\n%s", logs.String())
	}
}

// One shadow's operations reach the broker in decision order, re-sends included: 60 shadows get
// an add and five modifies each (no confirmations: an operation completes when Artemis accepts
// it), through two instances that both die right after a send was accepted and before its
// outcome was recorded; the queue then holds, per shadow, sequences 1..6 in order, each once.
func TestArtemisShadowOrderAcrossKills(t *testing.T) {
	b := amqptest.Artemis(t)
	q := b.Queue(t, "order")
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	cfgFile := retryingConfig(t, srv.ClientURL(), b.URL, q)
	var restarts sync.WaitGroup
	for _, fault := range []string{"before-outcome:40", "before-outcome:120"} {
		cmd := serveWith(t, cfgFile, os.Stderr, "SHADOWBRIDGE_LOG=error", "SHADOWBRIDGE_FAULT="+fault)
		restarts.Go(func() {
			_ = cmd.Wait()
			startServe(t, cfgFile)
		})
	}
	send := func(subject, body string) string { return untilAnswered(t, nc, subject, body, 1000) }
	const shadows, modifies = 60, 5
	var clients sync.WaitGroup
	for c := range 12 {
		clients.Go(func() {
			for i := c; i < shadows; i += 12 {
				var rep struct{ ShadowID string }
				_ = json.Unmarshal([]byte(send("prov.cmd.fs.add", fmt.Sprintf(`{"requestId":"a%d","objectClass":"AccountObjectClass","attributes":{"login":["o%d"]}}`, i, i))), &rep)
				for j := range modifies {
					send("prov.cmd.fs.modify", fmt.Sprintf(`{"requestId":"m%d-%d","shadowId":%q,"changes":{"n":{"replace":["%d"]}}}`, i, j, rep.ShadowID, j))
				}
			}
		})
	}
	clients.Wait()
	restarts.Wait()
	r := b.Receiver(t, q)
	seqs := map[string][]int64{}
	for n := 0; n < shadows*(modifies+1); n++ {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		m, err := r.Receive(ctx, nil)
		cancel()
		if err != nil {
			t.Fatalf("%d of %d messages on the queue: %v", n, shadows*(modifies+1), err)
		}
		_ = r.AcceptMessage(t.Context(), m)
		id := m.ApplicationProperties["shadowId"].(string)
		seqs[id] = append(seqs[id], m.ApplicationProperties["sequence"].(int64))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if m, err := r.Receive(ctx, nil); err == nil {
		t.Fatalf("more messages than operations: %v", m.ApplicationProperties)
	}
	want := fmt.Sprint([]int64{1, 2, 3, 4, 5, 6})
	for id, s := range seqs {
		if fmt.Sprint(s) != want {
			t.Errorf("shadow %s: sequences on the queue %v, want %s", id, s, want)
		}
	}
	if len(seqs) != shadows {
		t.Fatalf("%d shadows on the queue, want %d", len(seqs), shadows)
	}
}
