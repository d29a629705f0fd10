package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"shadowbridge/cmd/internal/cli"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Audit output is a contract with auditors' tooling: a fixed log (fixed ids and times) gives
// byte-for-byte the output in testdata, as JSON lines and as the table. Run with -update after
// a deliberate change, and review the diff.
func TestAuditGolden(t *testing.T) {
	srv := natstest.Start(t)
	store, err := eventstore.Open(t.Context(), srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	res := storetest.Resource(t)
	at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	const shadow = "11111111-1111-4111-8111-111111111111"
	step := 0
	decide := func(cmd domain.Command) {
		t.Helper()
		st, seq, err := store.Load(t.Context(), res.Name(), shadow)
		if err != nil {
			t.Fatal(err)
		}
		step++
		ev, err := domain.Decide(st, cmd, at.Add(time.Duration(step)*time.Second))
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if _, err := store.Append(t.Context(), eventstore.Commit{Resource: res.Name(), ShadowID: shadow, ExpectedSeq: seq,
			Events: ev, State: domain.Fold(st, ev), RequestID: "hr-" + string(rune('0'+step))}); err != nil {
			t.Fatal(err)
		}
	}
	add, mod, del := "22222222-2222-4222-8222-222222222222", "33333333-3333-4333-8333-333333333333", "44444444-4444-4444-8444-444444444444"
	decide(domain.Add{Resource: res, ShadowID: shadow, OperationID: add, RequestID: "hr-1", ObjectClass: "AccountObjectClass",
		Attributes:  domain.Attributes{"login": {"anne"}, "shoeSize": {int64(38)}},
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	decide(domain.RecordFailure{Resource: res, OperationID: add, Attempt: 1, Error: domain.OperationError{Category: domain.CategoryCommunication, Message: "connection refused"}})
	decide(domain.Refresh{Resource: res, ForceRetry: true})
	decide(domain.RecordDelivery{Resource: res, OperationID: add, Attempt: 2, Reference: add})
	decide(domain.Confirm{Resource: res, OperationID: add, Result: domain.ResultSuccess, PrimaryIdentifiers: domain.Attributes{"uid": {"u-1"}}})
	decide(domain.Modify{Resource: res, OperationID: mod, RequestID: "hr-6", Changes: domain.Changes{"fullName": {Replace: []any{"Anne Bonny"}}}})
	decide(domain.RecordDelivery{Resource: res, OperationID: mod, Attempt: 1})
	decide(domain.Confirm{Resource: res, OperationID: mod, Result: domain.ResultSuccess})
	decide(domain.Delete{Resource: res, OperationID: del, RequestID: "hr-9"})
	decide(domain.RecordDelivery{Resource: res, OperationID: del, Attempt: 1})
	decide(domain.Confirm{Resource: res, OperationID: del, Result: domain.ResultFatalError, Message: "account locked"})

	for _, c := range []struct {
		file   string
		asJSON bool
	}{{"audit.golden.jsonl", true}, {"audit.golden.txt", false}} {
		var out bytes.Buffer
		if err := cli.StreamEvents(context.Background(), store, eventstore.ScanOptions{}, cli.AuditFilter{}, c.asJSON, false, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", c.file)
		if *update {
			if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestAuditGolden -update to write it)", err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", c.file, out.Bytes(), want)
		}
	}
}
