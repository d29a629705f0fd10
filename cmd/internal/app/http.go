package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go"

	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/domain"
)

// Handler serves health checks, the pending list as JSON, and a small status page.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		metrics.Default.WriteText(w)
		a.writeGauges(r.Context(), w)
	})
	mux.HandleFunc("GET /api/pending", func(w http.ResponseWriter, r *http.Request) {
		list, err := a.Pending.Pending(r.Context(), r.URL.Query().Get("resource"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"shadows": list})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		list, err := a.Pending.Pending(r.Context(), "")
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>shadowbridge</title><meta http-equiv=refresh content=2><h1>shadowbridge</h1><p>%d shadows with pending operations at %s</p><ul>",
			len(list), time.Now().UTC().Format(time.RFC3339))
		for _, d := range list {
			fmt.Fprintf(w, "<li>%s %s <b>%s</b></li>", html.EscapeString(d.Resource), html.EscapeString(d.ShadowID), html.EscapeString(string(d.LifecycleState)))
		}
		fmt.Fprint(w, "</ul>")
	})
	return mux
}

// readyLag is how far the projection may trail the log for the service to count as caught up.
const readyLag = 1000

// Ready returns nil when the service can answer from current data: NATS is connected, the pending
// index has loaded, and the projection trails the log by fewer than readyLag records.
func (a *App) Ready(ctx context.Context) error {
	if st := a.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", st)
	}
	if !a.Pending.Ready() {
		return errors.New("pending index still loading")
	}
	lag, err := a.Projector.Lag(ctx, a.Store.Config().Stream)
	if err != nil {
		return fmt.Errorf("projection lag unknown: %w", err)
	}
	if lag >= readyLag {
		return fmt.Errorf("projection %d records behind the log", lag)
	}
	return nil
}

// writeGauges writes the gauges read at scrape time: projection lag, shadows with unfinished
// operations, and each resource's availability.
func (a *App) writeGauges(ctx context.Context, w io.Writer) {
	if lag, err := a.Projector.Lag(ctx, a.Store.Config().Stream); err == nil {
		fmt.Fprintf(w, "# HELP shadowbridge_projection_lag_records Records in the log not yet in the projection.\n# TYPE shadowbridge_projection_lag_records gauge\nshadowbridge_projection_lag_records %d\n", lag)
	}
	fmt.Fprint(w, "# HELP shadowbridge_pending_shadows Shadows with unfinished operations, by resource.\n# TYPE shadowbridge_pending_shadows gauge\n")
	names := slices.Sorted(maps.Keys(a.Service.Catalog()))
	for _, name := range names {
		if list, err := a.Pending.Pending(ctx, name); err == nil {
			fmt.Fprintf(w, "shadowbridge_pending_shadows{resource=%q} %d\n", name, len(list))
		}
	}
	fmt.Fprint(w, "# HELP shadowbridge_resource_up Resource availability: 1 for the current status, 0 otherwise.\n# TYPE shadowbridge_resource_up gauge\n")
	for _, name := range names {
		st, err := a.Service.ResourceState(ctx, name)
		if err != nil {
			continue
		}
		for _, s := range []domain.Availability{domain.AvailabilityUp, domain.AvailabilityDown, domain.AvailabilityBroken} {
			v := 0
			if st.Availability == s {
				v = 1
			}
			fmt.Fprintf(w, "shadowbridge_resource_up{resource=%q,status=%q} %d\n", name, s, v)
		}
		m := 0
		if st.AdministrativeAvailabilityStatus == domain.AdministrativeMaintenance {
			m = 1
		}
		fmt.Fprintf(w, "shadowbridge_resource_maintenance{resource=%q} %d\n", name, m)
	}
}
