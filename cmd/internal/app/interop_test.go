package app_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// Debian's python3-qpid-proton, a client nobody here wrote, is the target system: it confirms
// adds, then answers a reconciliation's list request with pages that differ from the shadows as
// an administrator left the target.
func TestInteropWithQpidProton(t *testing.T) {
	for _, b := range amqptest.Matrix(t) {
		t.Run(b.Name, func(t *testing.T) { testInteropWithQpidProton(t, b) })
	}
}

func testInteropWithQpidProton(t *testing.T, b amqptest.Broker) {
	if err := exec.Command("/usr/bin/python3", "-c", "import proton").Run(); err != nil {
		t.Fatalf("python3-qpid-proton is missing (deployments/amqp/test-broker.sh installs it): %v", err)
	}
	req, conf := b.Queue(t, "proton-requests"), b.Queue(t, "proton-confirmations")
	e := start(t, amqpConfig(t, b.URL, req, conf, true), app.Options{})
	const n = 5
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	py := exec.CommandContext(ctx, "/usr/bin/python3", "testdata/proton_target.py", b.URL, req, conf, fmt.Sprint(n), "list")
	done := make(chan error, 1)
	var out []byte
	go func() { var err error; out, err = py.CombinedOutput(); done <- err }()
	var ids []string
	for i := range n {
		r, err := e.app.Service.Provision(t.Context(), service.Request{Verb: "add", Resource: "fs", ObjectClass: "AccountObjectClass",
			Attributes: domain.Attributes{"login": {fmt.Sprint("p", i)}, "shoeSize": {int64(42)}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ShadowID)
	}
	for i, id := range ids {
		waitFor(t, "live with the uid proton assigned", 20*time.Second, func() bool {
			d := shadow(t, e.app, id)
			return d.LifecycleState == domain.LifecycleLive && len(d.PrimaryIdentifiers["uid"]) == 1 &&
				d.PrimaryIdentifiers["uid"][0] == fmt.Sprint("py-p", i) && d.PendingOperations[0].Message == "created by proton"
		})
	}
	run, err := e.app.Service.Reconcile(t.Context(), "fs", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("proton target: %v\n%s", err, out)
	}
	var r *domain.ReconciliationRun
	waitFor(t, "the run finished", 30*time.Second, func() bool {
		res, err := e.app.Service.ResourceState(t.Context(), "fs")
		r = res.Reconciliation
		return err == nil && r != nil && r.ID == run.ReconciliationID && r.State != domain.RunRunning
	})
	want := domain.ReconciliationCounts{Accounts: n, Unchanged: n - 2, Changed: 1, Discovered: 1, Gone: 1}
	if r.State != domain.RunFinished || r.Pages != 3 || r.Counts != want {
		t.Fatalf("run %+v, want finished after 3 pages with %+v", r, want)
	}
	if a := shadow(t, e.app, ids[1]).Attributes; fmt.Sprint(a["mail"]) != "[changed@proton]" {
		t.Errorf("the change on the target did not reach the cache: %v", a)
	}
	if !shadow(t, e.app, ids[n-1]).Dead {
		t.Error("the account deleted on the target left its shadow alive")
	}
}
