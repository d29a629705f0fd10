package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

// A broker outage under 10,000 operations logs the resource's changes (down, then up) and a
// periodic summary, not a line per operation; the operations wait and go out once it is back.
func TestOutageLogsStateChangesNotOperations(t *testing.T) {
	const n, clients = 10000, 32
	br := amqptest.Start(t)
	q := br.Queue(t, "outage-logs")
	proxy := amqptest.NewProxy(t, br.HostPort())
	proxy.Cut()
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: {url: %q, address: %q, maxBackoff: 1s}}
    consistency: {operationRetryPeriod: 1h}
`, br.Via(proxy), q))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx := t.Context()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	a, err := app.Start(ctx, nc, cfg, app.Options{SweepInterval: -1, SummaryInterval: 3 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; i < n; i += clients {
				if _, err := a.Service.Provision(ctx, service.Request{Verb: "add", Resource: "fs", ObjectClass: "AccountObjectClass",
					Attributes: domain.Attributes{"login": {fmt.Sprint("o", i)}}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// Every operation attempted once (the dispatcher's consumer has nothing left) and postponed.
	js, _ := jetstream.New(nc)
	waitFor(t, "every operation attempted", 3*time.Minute, func() bool {
		c, err := js.Consumer(ctx, "PROV_EVENTS", "PROV_DISPATCHER")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	waitFor(t, "a summary line", 20*time.Second, func() bool { return strings.Contains(logs.String(), "resource still unavailable") })
	proxy.Restore()
	waitFor(t, "the resource up again", time.Minute, func() bool { return strings.Contains(logs.String(), "resource available again") })
	// The operations go out: the first and the last are live. 10,000 released retries take about
	// a minute under the race detector alone, three when the soak and cluster scenarios share
	// the two cores (a CI run timed out at two).
	for _, login := range []string{"o0", fmt.Sprint("o", n-1)} {
		deadline := time.Now().Add(5 * time.Minute)
		waitFor(t, login+" live", 6*time.Minute, func() bool {
			if time.Now().After(deadline) {
				t.Fatalf("%s not live after 5 minutes; the service's log:\n%s", login, logs.String())
			}
			id, err := a.Service.Resolve(context.WithoutCancel(ctx), "fs", "AccountObjectClass", domain.Attributes{"login": {login}})
			if err != nil {
				return false
			}
			st, _, err := a.Store.Load(ctx, "fs", id)
			return err == nil && st.Lifecycle() == domain.LifecycleLive
		})
	}
	text := logs.String()
	lines := strings.Count(text, "\n")
	// The count grows with the outage's length (a summary per interval, reconnects on a
	// doubling count), not with its operations; under the race detector on a busy machine the
	// outage above lasts up to a minute or two.
	if lines > 60 {
		t.Fatalf("%d log lines for an outage of %d operations:\n%s", lines, n, text)
	}
	if strings.Count(text, "resource unavailable: its operations wait") != 1 {
		t.Fatalf("want the change to down logged once:\n%s", text)
	}
	t.Logf("%d log lines for an outage of %d operations", lines, n)
}
