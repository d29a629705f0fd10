package natsapi_test

import (
	"testing"
	"time"

	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/cmd/internal/natsapi"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/eventstore/natstest"
)

// A client that has its answer finds it counted: a scrape right after a reply sees the request
// in the metrics (it was counted after the reply went out, and a test reading the metrics then
// missed one now and then).
func TestARequestIsCountedBeforeItsReply(t *testing.T) {
	nc := natstest.Start(t).Connect(t)
	m := metrics.New()
	svc := service.New(eventstore.NewMemory(eventstore.DefaultConfig()), nil, domain.Catalog{}, nil, service.WithMetrics(m))
	t.Cleanup(svc.Close)
	api, err := natsapi.Serve(t.Context(), nc, svc, natsapi.ServeOptions{Prefix: "prov", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Stop() })
	for i := 1; i <= 300; i++ {
		if _, err := nc.Request("prov.cmd.demo.madeup", []byte(`{}`), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Request("prov.query.madeup", []byte(`{}`), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := m.Commands.Value("unknown", "not-found"); got != float64(i) {
			t.Fatalf("after %d replies to a made-up command, %v counted", i, got)
		}
		if got := m.Queries.Value("unknown", "not-found"); got != float64(i) {
			t.Fatalf("after %d replies to a made-up query, %v counted", i, got)
		}
	}
}
