package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
)

// crashOptions size the crash scenario. The suite runs a small one; `task crash` the full one
// (SHADOWBRIDGE_CRASH_SHADOWS, _MODIFIES, _WINDOW).
type crashOptions struct {
	Shadows, Modifies int           // shadows, and sequential modifies per shadow
	Window            time.Duration // JetStream's dedup window; everything is re-sent after it
}

// crashReport is what the scenario counts; every count but the first three must be 0.
type crashReport struct {
	Shadows, Requests, Kills int
	Mismatches               int // shadow or target attribute differs from the last acknowledged change
	DuplicateDecisions       int // request ids decided more than once
	ChangedReplies           int // a re-sent request id answered differently from its first reply
	ExtraAccounts            int // target accounts beyond one per add
	DeadWithAccount          int // deleted shadows whose account still exists at the target
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// `shadowbridge dev` (embedded NATS, sample target) is killed four times during load: by itself
// right after an append (before the request's reply is recorded), right after a request id's
// reservation (before the append), right after the index writes (before the append), and once by
// SIGKILL from outside at a random moment.
// Clients send sequential modifies per shadow and deletes, each retried with the same request id
// until answered, and re-send answered requests at once and again after the dedup window. Every
// shadow and every target account must end with its last acknowledged change, every request id
// keep its first reply and be decided once, every add make one account.
func TestCrashScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	o := crashOptions{
		Shadows:  envInt("SHADOWBRIDGE_CRASH_SHADOWS", 48),
		Modifies: envInt("SHADOWBRIDGE_CRASH_MODIFIES", 4),
		Window:   time.Duration(envInt("SHADOWBRIDGE_CRASH_WINDOW_SECONDS", 2)) * time.Second,
	}
	r := runCrashScenario(t, o)
	t.Logf("crash scenario: %d shadows, %d requests, %d kills: %d mismatches, %d duplicate decisions, %d changed replies, %d extra accounts, %d dead shadows with an account",
		r.Shadows, r.Requests, r.Kills, r.Mismatches, r.DuplicateDecisions, r.ChangedReplies, r.ExtraAccounts, r.DeadWithAccount)
	if r.Kills != 4 { // after an append, after a reservation, after the index writes, and one external
		t.Errorf("%d kills happened, want 4: the scenario did not crash where it should", r.Kills)
	}
	if r.Mismatches+r.DuplicateDecisions+r.ChangedReplies+r.ExtraAccounts+r.DeadWithAccount != 0 {
		t.Errorf("%+v", r)
	}
}

type sentRequest struct {
	subject, body string
	reply         string // the first successful reply
}

func runCrashScenario(t *testing.T, o crashOptions) crashReport {
	dir, natsAddr := t.TempDir(), natstest.FreeAddr(t)
	cfgFile := filepath.Join(t.TempDir(), "dev.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, `
nats: {duplicateWindow: %s}
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {sample: {}}
    operationExecutionConfirmation: true
`, o.Window), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		procMu sync.Mutex
		proc   *exec.Cmd
		kills  atomic.Int32
		acked  atomic.Int64
		done   = make(chan struct{})
	)
	start := func(fault string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "dev", "--data", dir, "--nats", natsAddr, "--http", natstest.FreeAddr(t), "--config", cfgFile)
		cmd.Env = append(os.Environ(), "SHADOWBRIDGE_TEST_MAIN=1", "SHADOWBRIDGE_LOG=error")
		if fault != "" {
			cmd.Env = append(cmd.Env, "SHADOWBRIDGE_FAULT="+fault)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procMu.Lock()
		proc = cmd
		procMu.Unlock()
		return cmd
	}
	// The supervisor: four lives that end in a crash, then one that runs to the end.
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		total := int64(o.Shadows * (o.Modifies + 2))
		for _, life := range []struct {
			fault string
			after int64 // external SIGKILL once this many requests are answered
		}{
			{fault: service.FaultAfterAppend + ":" + strconv.Itoa(o.Shadows*2)},
			{fault: service.FaultAfterReserve + ":" + strconv.Itoa(o.Shadows/2)},
			{fault: service.FaultAfterIndex + ":" + strconv.Itoa(o.Shadows/2)},
			{after: total / 2},
		} {
			cmd := start(life.fault)
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			if life.after > 0 {
			wait:
				for acked.Load() < life.after {
					select {
					case <-exited:
						break wait
					case <-done:
						break wait
					case <-time.After(5 * time.Millisecond):
					}
				}
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
			select {
			case <-exited:
				kills.Add(1)
			case <-done:
				_ = cmd.Process.Signal(syscall.SIGKILL)
				<-exited
				return
			}
		}
		start("")
	}()
	t.Cleanup(func() {
		close(done)
		<-supervised
		procMu.Lock()
		defer procMu.Unlock()
		if proc != nil {
			_ = proc.Process.Signal(syscall.SIGKILL)
			_ = proc.Wait()
		}
	})

	nc, err := nats.Connect("nats://"+natsAddr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// send retries a request with the same id until it is answered, and re-sends it once at
	// once: both replies must be the same.
	var changed atomic.Int32
	send := func(r *sentRequest) {
		deadline := time.Now().Add(3 * time.Minute)
		for {
			m, err := nc.Request(r.subject, []byte(r.body), 3*time.Second)
			if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
				r.reply = string(m.Data)
				break
			}
			if err == nil && m.Header.Get("Nats-Service-Error-Code") != "503" {
				t.Errorf("%s %s: %s %s", r.subject, r.body, m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error"))
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%s %s: never answered: %v", r.subject, r.body, err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		acked.Add(1)
		for {
			m, err := nc.Request(r.subject, []byte(r.body), 3*time.Second)
			if err != nil || m.Header.Get("Nats-Service-Error-Code") == "503" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if string(m.Data) != r.reply {
				changed.Add(1)
				t.Errorf("re-sent %s answered %s, first %s", r.body, m.Data, r.reply)
			}
			return
		}
	}
	type shadowPlan struct {
		id      string
		last    string // the last acknowledged fullName
		deleted bool
		reqs    []*sentRequest
	}
	plans := make([]*shadowPlan, o.Shadows)
	var wg sync.WaitGroup
	for c := range 16 {
		wg.Go(func() {
			for i := c; i < o.Shadows; i += 16 {
				p := &shadowPlan{}
				plans[i] = p
				add := &sentRequest{subject: "prov.cmd.demo.add",
					body: fmt.Sprintf(`{"requestId":"add-%d","objectClass":"AccountObjectClass","attributes":{"login":["c%d"],"fullName":["v-init"]}}`, i, i)}
				send(add)
				p.reqs = append(p.reqs, add)
				var rep struct{ ShadowID string }
				if json.Unmarshal([]byte(add.reply), &rep) != nil || rep.ShadowID == "" {
					t.Errorf("add %d: reply %q", i, add.reply)
					return
				}
				p.id, p.last = rep.ShadowID, "v-init"
				for j := range o.Modifies {
					v := fmt.Sprintf("v%d-%d", i, j)
					m := &sentRequest{subject: "prov.cmd.demo.modify",
						body: fmt.Sprintf(`{"requestId":"mod-%d-%d","shadowId":%q,"changes":{"fullName":{"replace":[%q]}}}`, i, j, p.id, v)}
					send(m)
					p.reqs = append(p.reqs, m)
					p.last = v
				}
				if i%4 == 3 {
					d := &sentRequest{subject: "prov.cmd.demo.delete", body: fmt.Sprintf(`{"requestId":"del-%d","identifiers":{"login":["c%d"]}}`, i, i)}
					send(d)
					p.reqs = append(p.reqs, d)
					p.deleted = true
				}
			}
		})
	}
	wg.Wait()
	js, _ := jetstream.New(nc)
	shadows, err := js.KeyValue(t.Context(), "PROV_SHADOWS")
	if err != nil {
		t.Fatal(err)
	}
	// Settle: every operation completed (redeliveries after the kills take the target's ack wait).
	settleBy := time.Now().Add(3 * time.Minute)
	for _, p := range plans {
		for p != nil && p.id != "" {
			var d domain.ShadowData
			e, err := shadows.Get(t.Context(), "demo."+p.id)
			if err == nil && json.Unmarshal(e.Value(), &d) == nil && settled(d) {
				break
			}
			if time.Now().After(settleBy) {
				t.Fatalf("shadow %s never settled: %s", p.id, e.Value())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// After the dedup window every request again: first replies, no new decisions.
	time.Sleep(o.Window + time.Second)
	rep := crashReport{Shadows: o.Shadows, Kills: int(kills.Load())}
	for _, p := range plans {
		for _, r := range p.reqs {
			rep.Requests++
			first := r.reply
			send(r)
			if r.reply != first {
				changed.Add(1)
				t.Errorf("after the dedup window %s answered %s, first %s", r.body, r.reply, first)
			}
		}
	}
	rep.ChangedReplies = int(changed.Load())
	accounts, err := js.KeyValue(t.Context(), bridge.SampleBucket)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, p := range plans {
		var d domain.ShadowData
		e, err := shadows.Get(t.Context(), "demo."+p.id)
		if err != nil || json.Unmarshal(e.Value(), &d) != nil {
			t.Fatalf("shadow %s: %v", p.id, err)
		}
		uid, _ := d.PrimaryIdentifiers["uid"][0].(string)
		acct, aerr := accounts.Get(t.Context(), "demo."+uid)
		if p.deleted {
			if !d.Dead {
				rep.Mismatches++
				t.Errorf("shadow %s: deleted, but not dead", p.id)
			}
			if aerr == nil {
				rep.DeadWithAccount++
			}
			continue
		}
		live++
		var attrs map[string][]any
		if aerr == nil {
			_ = json.Unmarshal(acct.Value(), &attrs)
		}
		if fmt.Sprint(d.Attributes["fullName"]) != "["+p.last+"]" || fmt.Sprint(attrs["fullName"]) != "["+p.last+"]" {
			rep.Mismatches++
			t.Errorf("shadow %s: fullName %v, at the target %v, last acknowledged %s", p.id, d.Attributes["fullName"], attrs["fullName"], p.last)
		}
	}
	keys, err := accounts.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys.Keys() {
		n++
	}
	rep.ExtraAccounts = n - live
	// One decision per request id, in the whole log.
	store, err := eventstore.Attach(t.Context(), nc, eventstore.DefaultConfig()) // read-only, as a client of dev may
	if err != nil {
		t.Fatal(err)
	}
	decided := map[string]int{}
	if _, err := store.Replay(t.Context(), 1, func(r *eventstore.Record) error {
		evs, err := r.Events()
		if err != nil {
			return err
		}
		for _, e := range evs {
			switch x := e.(type) {
			case domain.AddRequested:
				decided[x.RequestID]++
			case domain.ModifyRequested:
				decided[x.RequestID]++
			case domain.DeleteRequested:
				decided[x.RequestID]++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for id, n := range decided {
		if n > 1 {
			rep.DuplicateDecisions++
			t.Errorf("request %s decided %d times", id, n)
		}
	}
	return rep
}

// settled reports whether every operation of the shadow has completed.
func settled(d domain.ShadowData) bool {
	for _, p := range d.PendingOperations {
		if !p.Completed() {
			return false
		}
	}
	return true
}
