package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"shadowbridge/cmd/internal/cli"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
	"shadowbridge/eventstore/storetest"
)

// Records are formatted in batches on several goroutines: the output is still in log order,
// complete, and a failing writer stops the audit with its error.
func TestAuditKeepsLogOrderAcrossBatches(t *testing.T) {
	srv := natstest.Start(t)
	store, err := eventstore.Open(t.Context(), srv.Connect(t), eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	const shadows, per = 40, 25 // 1,000 records, about 8 batches
	if _, err := storetest.Populate(t.Context(), store, storetest.Resource(t), shadows, per); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cli.StreamEvents(context.Background(), store, eventstore.ScanOptions{}, cli.AuditFilter{}, true, false, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var last uint64
	lines := 0
	for sc := bufio.NewScanner(&out); sc.Scan(); lines++ {
		var h struct{ Seq uint64 }
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			t.Fatal(err)
		}
		if h.Seq < last || h.Seq > last+1 {
			t.Fatalf("line %d: record %d after %d", lines+1, h.Seq, last)
		}
		last = h.Seq
	}
	// Populate's commits hold an AddRequested and a TimerSet each.
	if last != shadows*per || lines != 2*shadows*per {
		t.Fatalf("%d lines up to record %d, want %d up to %d", lines, last, 2*shadows*per, shadows*per)
	}

	failing := &failAfter{n: 3}
	err = cli.StreamEvents(context.Background(), store, eventstore.ScanOptions{}, cli.AuditFilter{}, true, false, failing, io.Discard)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("audit to a failing writer: %v, want %v", err, errDiskFull)
	}
}

var errDiskFull = errors.New("disk full")

// failAfter accepts n writes, then fails every one.
type failAfter struct{ n int }

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errDiskFull
	}
	f.n--
	return len(p), nil
}
