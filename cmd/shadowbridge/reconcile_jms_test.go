package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// Reconciliation through Artemis against the JMS target system (Artemis' own JMS client, which
// does every add, modify and delete to the accounts it holds and answers list requests from
// them), by a serve process:
//   - killed (SIGKILL) in the middle of the run's first page, after an administrator's work on
//     the target; started again, Artemis redelivers the page and the run finishes counting every
//     account once;
//   - then running twice while a burst of modifies goes to the same accounts.
//
// At the end every live shadow holds what the JMS side holds, account for account, no
// acknowledged modify is undone, and verify --full is clean.
func TestReconciliationThroughArtemisJMSKilledAndRacing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real process")
	}
	b := amqptest.Artemis(t)
	requests, confirmations := b.Queue(t, "rj-requests"), b.Queue(t, "rj-confirmations")
	srv := natstest.Start(t)
	natsURL := srv.ClientURL()
	cfg := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `
nats: {url: %q}
http: {listen: "127.0.0.1:0"}
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {amqp: {url: %q, address: %q, confirmationAddress: %q, maxBackoff: 500ms}}
    operationExecutionConfirmation: true
    consistency: {operationRetryPeriod: 1s, operationRetryMaxAttempts: 1000}
`, natsURL, b.URL, requests, confirmations), 0o600); err != nil {
		t.Fatal(err)
	}
	jms, stdout, stderr := amqptest.JMSTarget(t, b, requests, confirmations, 0, "drift")
	first := serveWith(t, cfg, os.Stderr, "SHADOWBRIDGE_FAULT="+service.FaultMidPage+":1", "SHADOWBRIDGE_LOG=error")
	waitServing(t, natsURL)
	var ids []string
	for i := range 6 {
		ids = append(ids, addLiveIn(t, natsURL, "fs", fmt.Sprint("rj", i)))
	}

	// 1. Killed in the middle of page 1, started again: the page comes back from Artemis.
	run := reconcile(t, natsURL)
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not reach the middle of a page")
	}
	serveWith(t, cfg, os.Stderr, "SHADOWBRIDGE_LOG=error")
	r := runDone(t, natsURL, run)
	// The target holds rj0, rj1 (a fullName added there), rj3, rj4, rj5 and jms-outside.
	want := domain.ReconciliationCounts{Accounts: 6, Unchanged: 4, Changed: 1, Discovered: 1, Gone: 1}
	if r.State != domain.RunFinished || r.Pages != 3 || r.Counts != want {
		t.Fatalf("the killed run after the restart: %+v, want finished after 3 pages with %+v", r, want)
	}

	// 2. Two runs racing a burst of modifies on the live accounts.
	live := []string{ids[0], ids[1], ids[3], ids[4], ids[5]}
	var wg sync.WaitGroup
	for _, id := range live {
		wg.Go(func() {
			for k := 1; k <= 5; k++ {
				if out, err := client(t, natsURL, "modify", "-o", "json", "fs", id, fmt.Sprintf("v=%d", k)); err != nil {
					t.Errorf("modify %s: %v %s", id, err, out)
				}
			}
		})
	}
	for range 2 {
		runDone(t, natsURL, reconcile(t, natsURL))
	}
	wg.Wait()
	for _, id := range live {
		waitShadowSettled(t, natsURL, id)
	}
	if err := jms.Wait(); err != nil { // it stops 5 s after the last request
		t.Fatalf("JMS target: %v\n%s", err, stderr.String())
	}
	held := jmsAccounts(t, stdout.String())
	shadows := liveShadows(t, natsURL, "fs")
	for uid, d := range shadows {
		if got, want := jsonOf(d.Attributes), jsonOf(held[uid]); got != want {
			t.Errorf("shadow %s (%s): cache %s, the JMS target holds %s", d.ShadowID, uid, got, want)
		}
		if uid != "jms-outside" && fmt.Sprint(d.Attributes["v"]) != "[5]" {
			t.Errorf("shadow %s: v = %v, want the last acknowledged modify's 5", d.ShadowID, d.Attributes["v"])
		}
	}
	for uid := range held {
		if _, ok := shadows[uid]; !ok {
			t.Errorf("account %s on the target has no live shadow", uid)
		}
	}
	if len(shadows) != len(live)+1 {
		t.Errorf("%d live shadows, want %d (the five kept and the one discovered)", len(shadows), len(live)+1)
	}
	if out, err := client(t, natsURL, "verify", "--full", "--recheck", "2s"); err != nil {
		t.Fatalf("verify --full: %v\n%s", err, out)
	}
}

// waitServing waits until a serve instance answers on natsURL.
func waitServing(t *testing.T, natsURL string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := client(t, natsURL, "resource", "-o", "json", "fs"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not come up")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reconcile starts a run of resource fs and returns its id.
func reconcile(t *testing.T, natsURL string) string {
	t.Helper()
	out, err := client(t, natsURL, "reconcile", "-o", "json", "fs")
	var r struct {
		ReconciliationID string `json:"reconciliationId"`
	}
	if err != nil || json.Unmarshal([]byte(out), &r) != nil || r.ReconciliationID == "" {
		t.Fatalf("reconcile: %v %s", err, out)
	}
	return r.ReconciliationID
}

// runDone waits until run is over and returns it.
func runDone(t *testing.T, natsURL, run string) domain.ReconciliationRun {
	t.Helper()
	var res domain.ResourceData
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := client(t, natsURL, "resource", "-o", "json", "fs")
		if err == nil && json.Unmarshal([]byte(out), &res) == nil && res.Reconciliation != nil &&
			res.Reconciliation.ID == run && res.Reconciliation.State != domain.RunRunning {
			return *res.Reconciliation
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not finish: %v %+v", run, err, res.Reconciliation)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitShadowSettled waits until the shadow has no unfinished operation.
func waitShadowSettled(t *testing.T, natsURL, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var d domain.ShadowData
		out, err := client(t, natsURL, "get", "-o", "json", id)
		if err == nil && json.Unmarshal([]byte(out), &d) == nil && !domain.RestoreShadow(d).HasUnfinished() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow %s still has unfinished operations: %v %s", id, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// liveShadows returns the live shadows of resource, by uid, read from the log (the ids from the
// projection's keys).
func liveShadows(t *testing.T, natsURL, resource string) map[string]domain.ShadowData {
	t.Helper()
	keys, err := projectionKV(t, natsURL).ListKeysFiltered(t.Context(), resource+".*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]domain.ShadowData{}
	for k := range keys.Keys() {
		var d domain.ShadowData
		got, err := client(t, natsURL, "get", "-o", "json", strings.TrimPrefix(k, resource+"."))
		if err != nil || json.Unmarshal([]byte(got), &d) != nil {
			t.Fatalf("get %s: %v %s", k, err, got)
		}
		if !d.Dead {
			out[fmt.Sprint(d.PrimaryIdentifiers["uid"][0])] = d
		}
	}
	return out
}

// projectionKV opens the projection's bucket PROV_SHADOWS on a connection of its own, closed at the
// end of the test.
func projectionKV(t *testing.T, natsURL string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(t.Context(), "PROV_SHADOWS")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// jmsAccounts reads the accounts the JMS fixture printed as its last line.
func jmsAccounts(t *testing.T, out string) map[string]map[string][]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Type     string
			Accounts map[string]map[string][]any
		}
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Type == "accounts" {
			return l.Accounts
		}
	}
	t.Fatalf("the JMS fixture printed no accounts:\n%s", out)
	return nil
}

// jsonOf is v as canonical JSON (numbers as JSON reads them), for comparing attribute sets.
func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	var generic any
	_ = json.Unmarshal(b, &generic)
	if m, ok := generic.(map[string]any); ok && len(m) == 0 || generic == nil {
		return "{}"
	}
	b, _ = json.Marshal(generic)
	return string(b)
}
