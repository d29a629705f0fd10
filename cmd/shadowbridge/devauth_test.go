package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A client of `dev` (no credentials, as the walkthrough's) sends commands and reads, but cannot
// write the log, the index or the timers, nor purge, trim or take over what the service owns
// (issue 23: one garbage record published by a local client broke a shadow).
func TestDevClientsCannotWriteTheLog(t *testing.T) {
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	out, err := client(t, natsURL, "add", "-o", "json", "demo", "login=guarded")
	if err != nil {
		t.Fatalf("a client's command: %v", err)
	}
	id := strings.Split(strings.Split(out, `"shadowId": "`)[1], `"`)[0]
	nc, err := nats.Connect(natsURL, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := t.Context()
	stream, err := js.Stream(ctx, "PROV_EVENTS") // reading is allowed
	if err != nil {
		t.Fatal(err)
	}
	before, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 500*time.Millisecond) }
	for _, subject := range []string{"prov.evt.demo." + id, "prov.res.demo", "prov.timer.demo." + id, "prov.due.demo." + id} {
		c, cancel := short()
		if _, err := js.Publish(c, subject, []byte("garbage")); err == nil {
			t.Errorf("a client wrote %s", subject)
		}
		cancel()
	}
	c, cancel := short()
	defer cancel()
	if index, err := js.KeyValue(c, "PROV_INDEX"); err != nil {
		t.Fatal(err)
	} else if _, err := index.Put(c, "id.demo.x", []byte(id)); err == nil {
		t.Error("a client wrote the index")
	}
	c2, cancel2 := short()
	defer cancel2()
	if err := stream.Purge(c2); err == nil {
		t.Error("a client purged the log")
	}
	c3, cancel3 := short()
	defer cancel3()
	if err := stream.DeleteMsg(c3, 1); err == nil {
		t.Error("a client deleted a record")
	}
	c4, cancel4 := short()
	defer cancel4()
	if err := js.DeleteConsumer(c4, "PROV_EVENTS", "PROV_DISPATCHER"); err == nil {
		t.Error("a client deleted the dispatcher's consumer")
	}
	after, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.FirstSeq != before.State.FirstSeq || after.State.LastSeq < before.State.LastSeq {
		t.Fatalf("the log changed under a client: %+v -> %+v", before.State, after.State)
	}
	if _, err := client(t, natsURL, "get", "-o", "json", id); err != nil {
		t.Fatalf("the shadow after the attempts: %v", err)
	}
}

// `shadowbridge reconcile RESOURCE --wait` on dev: the run lists the sample target's accounts,
// finishes, and prints its counts; exit 0.
func TestReconcileVerb(t *testing.T) {
	natsURL, _, stop := startDev(t, t.TempDir())
	defer stop()
	for _, login := range []string{"r1", "r2"} {
		addLive(t, natsURL, login)
	}
	out, err := client(t, natsURL, "reconcile", "-o", "json", "demo", "--wait")
	if err != nil || !strings.Contains(out, `"state": "finished"`) || !strings.Contains(out, `"accounts": 2`) {
		t.Fatalf("reconcile --wait: %v\n%s", err, out)
	}
	if _, err := client(t, natsURL, "reconcile"); err == nil {
		t.Fatal("reconcile without a resource: no error")
	}
}

// addLive adds an account on the dev at natsURL and waits until its shadow is live (read from the
// log, not the projection, which may not have it yet).
func addLive(t *testing.T, natsURL, login string) {
	t.Helper()
	addLiveIn(t, natsURL, "demo", login)
}

// addLiveIn adds an account to resource and waits until its shadow is live; it returns its id.
func addLiveIn(t *testing.T, natsURL, resource, login string) string {
	t.Helper()
	out, err := client(t, natsURL, "add", "-o", "json", resource, "login="+login)
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ ShadowID string }
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := client(t, natsURL, "get", "-o", "json", r.ShadowID)
		if err == nil && strings.Contains(out, `"lifecycleState": "live"`) && !strings.Contains(out, `"executionStatus": "executing"`) {
			return r.ShadowID
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became live: %v %s", login, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
