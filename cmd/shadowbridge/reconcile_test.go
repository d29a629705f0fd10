package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// A reconciliation killed in the middle of a page (kill -9 of dev, between half the page's
// accounts and the page's record) resumes after the restart: the target's list request comes
// back, the page is applied again, the run finishes with the counts of one run, and verify is
// clean.
func TestReconciliationKilledMidPage(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a real process")
	}
	dir, natsAddr := t.TempDir(), natstest.FreeAddr(t)
	natsURL := "nats://" + natsAddr
	start := func(fault string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "dev", "--data", dir, "--nats", natsAddr, "--http", natstest.FreeAddr(t))
		cmd.Env = append(os.Environ(), "SHADOWBRIDGE_TEST_MAIN=1", "SHADOWBRIDGE_LOG=error")
		if fault != "" {
			cmd.Env = append(cmd.Env, "SHADOWBRIDGE_FAULT="+fault)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	waitUp := func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := client(t, natsURL, "resource", "-o", "json", "demo"); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("dev did not come up")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := start(service.FaultMidPage + ":1")
	waitUp()
	for i := range 6 {
		addLive(t, natsURL, fmt.Sprint("k", i))
	}
	started, err := client(t, natsURL, "reconcile", "-o", "json", "demo")
	if err != nil {
		t.Fatal(err)
	}
	var run struct {
		ReconciliationID string `json:"reconciliationId"`
	}
	if err := json.Unmarshal([]byte(started), &run); err != nil || run.ReconciliationID == "" {
		t.Fatalf("reconcile: %v %s", err, started)
	}
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	select {
	case <-exited: // killed itself in the middle of the page
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not reach the middle of a page")
	}
	start("")
	waitUp()
	// The list request comes back to the restarted sample target, the page is applied again, and
	// the run that was killed finishes, counting every account once.
	var res domain.ResourceData
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := client(t, natsURL, "resource", "-o", "json", "demo")
		if err == nil && json.Unmarshal([]byte(out), &res) == nil && res.Reconciliation != nil &&
			res.Reconciliation.ID == run.ReconciliationID && res.Reconciliation.State != domain.RunRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed run did not finish after the restart: %v %+v", err, res.Reconciliation)
		}
		time.Sleep(200 * time.Millisecond)
	}
	want := domain.ReconciliationCounts{Accounts: 6, Unchanged: 6}
	if r := res.Reconciliation; r.State != domain.RunFinished || r.Pages != 1 || r.Counts != want {
		t.Fatalf("the run after the restart: %+v, want finished after one page with %+v", r, want)
	}
	if out, err := client(t, natsURL, "verify", "--recheck", "2s"); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}
