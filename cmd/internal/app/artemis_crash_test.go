package app_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"shadowbridge/bridge"
	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
)

// drain receives everything on the queue until it has been quiet for a while and counts the
// messages by message-id.
func drain(t *testing.T, b amqptest.Broker, q string) map[string]int {
	t.Helper()
	r := b.Receiver(t, q)
	got := map[string]int{}
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		m, err := r.Receive(ctx, nil)
		cancel()
		if err != nil {
			return got
		}
		_ = r.AcceptMessage(t.Context(), m)
		id, _ := m.Properties.MessageID.(amqp.UUID)
		got[id.String()]++
	}
}

// streamAdds provisions len(ops) accounts in the background, calling at(i) before the i-th,
// and fills in their operation and shadow ids.
func streamAdds(t *testing.T, e *env, ops, shadows []string, at func(i int)) (done <-chan struct{}) {
	n := len(ops)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		for i := range n {
			at(i)
			r := add(t, e.app, fmt.Sprint("a", i))
			ops[i], shadows[i] = r.OperationID, r.ShadowID
		}
	}()
	return ch
}

// resendBefore sends again, through shadowbridge's own AMQP target, the first k operations (sent
// before the broker went away): a re-send is thus certain, and the broker's duplicate detection
// (persisted, or on the shared journal) must drop each of them.
func resendBefore(t *testing.T, url, q string, ops, shadows []string, k int) {
	t.Helper()
	tgt, err := bridge.NewAMQPTarget(bridge.AMQPOptions{URL: url, Address: q, Transformation: bridge.SimplifiedJSON})
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	for i := range k {
		req := bridge.Request{Resource: "fs", ShadowID: shadows[i], OperationID: ops[i], Attempt: 2,
			Body: domain.TargetRequest{Operation: domain.ChangeAdd, ObjectClass: "AccountObjectClass", Attributes: domain.Attributes{"login": {fmt.Sprint("a", i)}}}}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := tgt.Send(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("re-send of %s: %v", ops[i], err)
		}
	}
}

// checkExactlyOnce fails unless every operation is on the queue exactly once.
func checkExactlyOnce(t *testing.T, ops []string, got map[string]int) {
	t.Helper()
	twice, missing := 0, 0
	for _, op := range ops {
		switch got[op] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	if missing > 0 || twice > 0 || len(got) != len(ops) {
		t.Fatalf("%d operations: %d missing on the queue, %d more than once, %d messages", len(ops), missing, twice, len(got))
	}
}

func crashConfig(t *testing.T, urls, q string) app.Config {
	t.Helper()
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {%s, address: %q, maxBackoff: 300ms}}
    consistency: {operationRetryPeriod: 1s, operationRetryMaxAttempts: 1000}
`, urls, q))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// kill -9 of the Artemis JVM mid-stream and a restart: what it accepted survives in its journal,
// the bridge reconnects by itself, nothing is lost and nothing is on the queue twice (its
// duplicate-detection cache is persisted too: operations accepted before the kill, sent again
// after the restart, are dropped).
func TestArtemisBrokerCrash(t *testing.T) {
	i := amqptest.CrashInstance(t)
	q := amqptest.Unique("crash")
	e := start(t, crashConfig(t, fmt.Sprintf("url: %q", i.URL), q), app.Options{})
	var sentBefore atomic.Int64
	const n = 600
	ops, shadows := make([]string, n), make([]string, n)
	done := streamAdds(t, e, ops, shadows, func(k int) {
		if k == n/2 {
			waitFor(t, "a good part sent", 30*time.Second, func() bool { return shadow(t, e.app, shadows[k/2]).Exists })
			i.Kill(t)
			sentBefore.Store(int64(k))
			time.Sleep(500 * time.Millisecond) // adds go on while the broker is dead
			i.Start(t)
		}
	})
	<-done
	waitFor(t, "everything sent after the restart", 60*time.Second, func() bool {
		for _, id := range shadows {
			if !shadow(t, e.app, id).Exists {
				return false
			}
		}
		return true
	})
	resendBefore(t, i.URL, q, ops, shadows, 20)
	got := drain(t, i.Broker, q)
	checkExactlyOnce(t, ops, got)
	t.Logf("%d operations (broker killed after %d), %d messages on the queue after its restart", n, sentBefore.Load(), len(got))
}

// A primary/backup pair on one shared journal: the target lists both URLs, the primary is
// killed mid-stream, sends go on through the backup, nothing lost, nothing twice (operations the
// primary accepted, sent again to the backup, are dropped).
func TestArtemisFailover(t *testing.T) {
	primary, backup := amqptest.HAPair(t)
	q := amqptest.Unique("ha")
	e := start(t, crashConfig(t, fmt.Sprintf("urls: [%q, %q]", primary.URL, backup.URL), q), app.Options{})
	const n = 600
	ops, shadows := make([]string, n), make([]string, n)
	done := streamAdds(t, e, ops, shadows, func(k int) {
		if k == n/2 {
			waitFor(t, "a good part sent", 30*time.Second, func() bool { return shadow(t, e.app, shadows[k/2]).Exists })
			primary.Kill(t)
		}
	})
	<-done
	waitFor(t, "everything sent through the backup", 60*time.Second, func() bool {
		for _, id := range shadows {
			if !shadow(t, e.app, id).Exists {
				return false
			}
		}
		return true
	})
	resendBefore(t, backup.URL, q, ops, shadows, 20) // sent through the primary before it died
	checkExactlyOnce(t, ops, drain(t, backup.Broker, q))
}
