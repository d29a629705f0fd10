package app

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/buildinfo"
	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/projections"
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
	mux.Handle("GET /metrics", a.metrics.Handler())
	mux.HandleFunc("GET /api/pending", a.pendingRows)
	static, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			http.ServeFileFS(w, r, webFS, "web/"+name)
		}
	}
	mux.HandleFunc("GET /{$}", page("dashboard.html"))
	mux.HandleFunc("GET /shadow/{id}", func(w http.ResponseWriter, r *http.Request) {
		// An unknown shadow is a 404 page, not an empty page waiting for a stream that never comes.
		if _, err := a.Service.Shadow(r.Context(), r.PathValue("id"), time.Time{}); err != nil {
			code, _ := api.StatusOf(err)
			errorPage(w, code, err)
			return
		}
		page("shadow.html")(w, r)
	})
	mux.HandleFunc("GET /api/shadows", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		list, err := a.Dashboard.Shadows(r.Context(), projections.ShadowQuery{Resource: q.Get("resource"), Text: q.Get("q"),
			State: domain.Lifecycle(q.Get("state")), After: q.Get("after"), Limit: limit})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, list)
	})
	mux.HandleFunc("GET /api/dashboard", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.dashboardData(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, d)
	})
	mux.HandleFunc("GET /api/stream", a.streamDashboard)
	mux.HandleFunc("GET /api/shadow/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, _, err := a.shadowData(r.Context(), r.PathValue("id"))
		if err != nil {
			code, _ := api.StatusOf(err)
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, d)
	})
	mux.HandleFunc("GET /api/shadow/{id}/stream", a.streamShadow)
	return secure(a.http, mux)
}

// errorPage answers a page request that cannot be served with a small HTML page saying why.
func errorPage(w http.ResponseWriter, code int, err error) {
	title := http.StatusText(code)
	if code == http.StatusNotFound {
		title = "Not found"
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s · shadowbridge</title>
<link rel="stylesheet" href="/static/style.css"></head><body><header><h1><a href="/">shadowbridge</a></h1></header>
<main class="notfound"><h2>%s</h2><p>%s</p><p><a href="/">Back to the dashboard</a></p></main></body></html>
`, html.EscapeString(title), html.EscapeString(title), html.EscapeString(err.Error()))
}

// tokenCookie carries the browser's session: pages and their EventSource streams cannot send an
// Authorization header, so /?token=... sets it once. It holds a value derived from the token
// (sessionValue), never the token itself: a cookie read off a browser opens the dashboard, not
// the API with a bearer token or a way to learn the token. Secure when served over TLS.
const tokenCookie = "shadowbridge_token"

// sessionValue is the session cookie's value for token: an HMAC-SHA256 keyed by the token, so it
// stays valid across restarts and changes when the token does.
func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("shadowbridge dashboard session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// secure adds the security headers to every answer and, with a token configured, requires it
// (Authorization: Bearer, or the cookie) everywhere but the health checks (and /metrics with
// OpenMetrics). Tokens are compared in constant time.
func secure(cfg HTTPConfig, next http.Handler) http.Handler {
	want := []byte(cfg.Token)
	ok := func(got string) bool { return got != "" && subtle.ConstantTimeCompare([]byte(got), want) == 1 }
	session := []byte(sessionValue(cfg.Token))
	okSession := func(got string) bool { return got != "" && subtle.ConstantTimeCompare([]byte(got), session) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		open := r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || (r.URL.Path == "/metrics" && cfg.OpenMetrics)
		if len(want) == 0 || open {
			next.ServeHTTP(w, r)
			return
		}
		if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet {
			if !ok(t) {
				http.Error(w, "unauthorized: wrong token", http.StatusUnauthorized)
				return
			}
			// Keep the token out of the address bar, history and logs from here on.
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: string(session), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		authorized := ok(got)
		if c, err := r.Cookie(tokenCookie); got == "" && err == nil {
			authorized = okSession(c.Value)
		}
		if !authorized {
			h.Set("WWW-Authenticate", `Bearer realm="shadowbridge"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <http.token>, or open /?token=<http.token> once in the browser", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readyLag is how far the projection may trail the log for the service to count as caught up.
const readyLag = 1000

// readyWait bounds Ready's question to JetStream: no answer in that time is "not ready".
const readyWait = 900 * time.Millisecond

// Ready returns nil when the service can answer from current data: NATS is connected, the pending
// index has loaded, and the projection trails the log by fewer than readyLag records.
func (a *App) Ready(ctx context.Context) error {
	if st := a.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection is %s", st)
	}
	if !a.Pending.Ready() {
		return errors.New("pending index still loading")
	}
	// Bounded: a probe has a timeout of its own (Kubernetes' default is 1 s), and a NATS server
	// going away while the connection still says connected left the lag's request waiting 5 s.
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	lag, err := a.Projector.Lag(ctx, a.Store.Config().Stream)
	if err != nil {
		return fmt.Errorf("projection lag unknown: %w", err)
	}
	if lag >= readyLag {
		return fmt.Errorf("projection %d records behind the log", lag)
	}
	return nil
}

// registerGauges registers the gauges read at scrape time: projection lag, shadows with
// unfinished operations, and each resource's availability and maintenance.
func (a *App) registerGauges() {
	scrape := func() (context.Context, context.CancelFunc) { return context.WithTimeout(a.ctx, 2*time.Second) }
	names := func() []string { return slices.Sorted(maps.Keys(a.Service.Catalog())) }
	bi := buildinfo.Read()
	a.metrics.NewGaugeFunc("shadowbridge_build_info", "Always 1: the running shadowbridge's release, commit and Go version as labels.", func() []metrics.LabeledValue {
		return []metrics.LabeledValue{{Value: 1, Labels: []string{bi.Version, bi.Revision, bi.GoVersion}}}
	}, "version", "revision", "goversion")
	a.metrics.NewGaugeFunc("shadowbridge_projection_lag_records", "Records in the log not yet in the projection.", func() []metrics.LabeledValue {
		ctx, cancel := scrape()
		defer cancel()
		lag, err := a.Projector.Lag(ctx, a.Store.Config().Stream)
		if err != nil {
			return nil
		}
		return []metrics.LabeledValue{{Value: float64(lag)}}
	})
	a.metrics.NewGaugeFunc("shadowbridge_pending_shadows", "Shadows with unfinished operations, by resource.", func() []metrics.LabeledValue {
		var out []metrics.LabeledValue
		for _, name := range names() {
			out = append(out, metrics.LabeledValue{Labels: []string{name}, Value: float64(a.Pending.Count(name))})
		}
		return out
	}, "resource")
	states := func() map[string]domain.ResourceData {
		ctx, cancel := scrape()
		defer cancel()
		out := map[string]domain.ResourceData{}
		for _, name := range names() {
			if st, err := a.Service.ResourceState(ctx, name); err == nil {
				out[name] = st
			}
		}
		return out
	}
	// A state set: one series per state, 1 for the current one.
	a.metrics.NewGaugeFunc("shadowbridge_resource_state", "Resource availability as a state set (up, down, broken): 1 for the current state, 0 for the others.", func() []metrics.LabeledValue {
		var out []metrics.LabeledValue
		for name, st := range states() {
			for _, s := range []domain.Availability{domain.AvailabilityUp, domain.AvailabilityDown, domain.AvailabilityBroken} {
				v := 0.0
				if st.Availability == s {
					v = 1
				}
				out = append(out, metrics.LabeledValue{Labels: []string{name, string(s)}, Value: v})
			}
		}
		return out
	}, "resource", "state")
	a.metrics.NewGaugeFunc("shadowbridge_resource_maintenance", "1 while the resource is in maintenance.", func() []metrics.LabeledValue {
		var out []metrics.LabeledValue
		for name, st := range states() {
			v := 0.0
			if st.AdministrativeAvailabilityStatus == domain.AdministrativeMaintenance {
				v = 1
			}
			out = append(out, metrics.LabeledValue{Labels: []string{name}, Value: v})
		}
		return out
	}, "resource")
}

//go:embed web
var webFS embed.FS

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// DashboardData is what the dashboard shows (projections.BuildDashboard).
type DashboardData = projections.DashboardData

var _ projections.ResourceStates = (*service.Service)(nil)

func (a *App) dashboardData(ctx context.Context) (DashboardData, error) {
	return projections.BuildDashboard(ctx, time.Now().UTC(), slices.Sorted(maps.Keys(a.Service.Catalog())), projections.DashboardSources{
		States: a.Service, Dashboard: a.Dashboard, Trend: a.Trend, Pending: a.Pending, NextAttempt: a.nextAttempt,
	})
}

// nextAttempt says when a shadow's earliest retry is due, by its resource's consistency settings.
func (a *App) nextAttempt(sd domain.ShadowData) (time.Time, bool) {
	r, err := a.Service.Catalog().Lookup(sd.Resource)
	if err != nil {
		return time.Time{}, false
	}
	return domain.NextRetry(domain.RestoreShadow(sd), r.Consistency())
}

// pendingRows answers GET /api/pending?resource=&after=&limit=: a page of the pending table
// (limit 1 to api.MaxPendingLimit, default projections.DashboardPageSize).
func (a *App) pendingRows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := projections.DashboardPageSize
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > api.MaxPendingLimit {
			http.Error(w, fmt.Sprintf("limit %q: want a number from 1 to %d", l, api.MaxPendingLimit), http.StatusBadRequest)
			return
		}
		limit = n
	}
	if res := q.Get("resource"); res != "" {
		if _, err := a.Service.Catalog().Lookup(res); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
	}
	rows, err := a.Pending.Rows(r.Context(), q.Get("resource"), q.Get("after"), limit, a.nextAttempt)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, rows)
}

// sse prepares a server-sent events response; send writes one event.
func sse(w http.ResponseWriter) (send func(event string, v any) error, ok bool) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	return func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}, true
}

// streamDashboard pushes the dashboard on connect and whenever it changes. Every stream sends
// the same bytes: the feed builds the dashboard once per change for all of them, so readers
// cost the writers nothing per reader.
func (a *App) streamDashboard(w http.ResponseWriter, r *http.Request) {
	release, ok := a.streamSlot(w)
	if !ok {
		return
	}
	defer release()
	send, ok := sse(w)
	if !ok {
		return
	}
	var seen uint64
	for {
		data, ver, next := a.feed.latest(r.Context(), a)
		if data == nil {
			return
		}
		if ver != seen {
			if err := send("dashboard", json.RawMessage(data)); err != nil {
				return
			}
			seen = ver
		}
		select {
		case <-r.Context().Done():
			return
		case <-a.ctx.Done(): // shutting down: end the stream so the HTTP server can stop
			return
		case <-next:
		}
	}
}

// MaxStreams bounds the dashboard and shadow event streams open at once on one instance; more
// are refused with 503 (the browser's EventSource retries).
const MaxStreams = 256

// streamSlot takes one of the MaxStreams stream slots, or answers 503.
func (a *App) streamSlot(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case a.streams <- struct{}{}:
		return func() { <-a.streams }, true
	default:
		http.Error(w, fmt.Sprintf("too many open streams (%d); try again later", MaxStreams), http.StatusServiceUnavailable)
		return nil, false
	}
}

// dashboardFeed builds the dashboard once per change for every stream: at most every 250 ms
// while the projection changes (bursts coalesce), and every 2 s (availability lives outside the
// projection). The builder starts with the first stream and runs until the app stops.
type dashboardFeed struct {
	mu      sync.Mutex
	data    []byte
	content []byte // data without its time: a new version only when this changes
	ver     uint64
	next    chan struct{} // closed when a new version is out
	running bool
}

// latest returns the current dashboard, its version and a channel closed when the next one is
// out, starting the builder if needed. nil data: the app is shutting down or ctx ended before
// the first build.
func (f *dashboardFeed) latest(ctx context.Context, a *App) ([]byte, uint64, <-chan struct{}) {
	f.mu.Lock()
	if f.next == nil {
		f.next = make(chan struct{})
	}
	if !f.running {
		f.running = true
		go f.build(a)
	}
	data, ver, next := f.data, f.ver, f.next
	f.mu.Unlock()
	if data != nil {
		return data, ver, next
	}
	select {
	case <-next:
		return f.latest(ctx, a)
	case <-ctx.Done():
	case <-a.ctx.Done():
	}
	return nil, 0, nil
}

func (f *dashboardFeed) build(a *App) {
	changed, stop := a.Dashboard.Subscribe()
	defer stop()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		d, err := a.dashboardData(a.ctx)
		if err == nil {
			stamp := d.Time
			d.Time = time.Time{}
			content, _ := json.Marshal(d) // what changed, whatever the time
			d.Time = stamp
			b, _ := json.Marshal(d)
			f.mu.Lock()
			if !bytes.Equal(content, f.content) {
				f.data, f.content, f.ver = b, content, f.ver+1
				close(f.next)
				f.next = make(chan struct{})
			}
			f.mu.Unlock()
		}
		select {
		case <-a.ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ShadowView is the shadow page: the shadow, why it is so, and its event timeline.
type ShadowView struct {
	Shadow      domain.ShadowData      `json:"shadow"`
	Explanation domain.Explanation     `json:"explanation"`
	History     []service.HistoryEvent `json:"history"`
}

func (a *App) shadowData(ctx context.Context, id string) (ShadowView, string, error) {
	st, err := a.Service.Shadow(ctx, id, time.Time{})
	if err != nil {
		return ShadowView{}, "", err
	}
	x, err := a.Service.Explain(ctx, id)
	if err != nil {
		return ShadowView{}, "", err
	}
	h, err := a.Service.History(ctx, id)
	if err != nil {
		return ShadowView{}, "", err
	}
	return ShadowView{Shadow: st, Explanation: x, History: h}, projections.Key(st.Resource, id), nil
}

// streamShadow pushes the shadow page on connect and whenever its projection entry changes.
func (a *App) streamShadow(w http.ResponseWriter, r *http.Request) {
	release, ok := a.streamSlot(w)
	if !ok {
		return
	}
	defer release()
	d, key, err := a.shadowData(r.Context(), r.PathValue("id"))
	if err != nil {
		code, _ := api.StatusOf(err)
		http.Error(w, err.Error(), code)
		return
	}
	send, ok := sse(w)
	if !ok {
		return
	}
	watch, err := a.kv.Watch(r.Context(), key, jetstream.UpdatesOnly())
	if err != nil {
		return
	}
	defer func() { _ = watch.Stop() }()
	for {
		if err := send("shadow", d); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-a.ctx.Done():
			return
		case <-watch.Updates():
		}
		if d, _, err = a.shadowData(r.Context(), r.PathValue("id")); err != nil {
			return
		}
	}
}
