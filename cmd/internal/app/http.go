package app

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"time"
)

// Handler serves health checks, the pending list as JSON, and a small status page.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
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
