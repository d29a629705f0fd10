package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Dashboard keeps per-resource counts of the projection (shadows by lifecycle state, pending
// operations by execution status, the retry backlog, recent failures) current by watching the
// shadow bucket, and tells subscribers when they change. Each service instance runs its own.
// Safe for concurrent use.
type Dashboard struct {
	log *slog.Logger

	mu      sync.RWMutex
	shadows map[string]shadowSummary // key -> summary
	subs    map[chan struct{}]struct{}
	ready   chan struct{}
}

// shadowSummary is what the dashboard keeps of one shadow: a few words, not the shadow.
type shadowSummary struct {
	id        string
	login     string   // first value of the first secondary identifier
	uid       string   // first value of the first primary identifier
	done      []doneOp // completed operations still in the shadow (retention keeps a day by default)
	resource  string
	lifecycle domain.Lifecycle
	statuses  []domain.ExecutionStatus // of unfinished operations
	retries   int                      // unfinished operations postponed for retry
	failures  []failure                // failed attempts and fatal completions still visible
}

// failure is a failed attempt or a fatal completion the projection still shows.
type failure struct {
	at          time.Time
	operationID string
	change      domain.ChangeType
	fatal       bool
	retrying    bool   // a failed attempt of an operation that is not over
	err         string // "category: message"
}

// FailureRow is a failure in the dashboard's list of recent failures: the operation's last
// failed attempt, or its completion with fatal_error.
type FailureRow struct {
	Time        time.Time         `json:"time"`
	Resource    string            `json:"resource"`
	ShadowID    string            `json:"shadowId"`
	OperationID string            `json:"operationId"`
	ChangeType  domain.ChangeType `json:"changeType"`
	// Fatal: the operation ended with fatal_error; otherwise an attempt failed, and Retrying
	// says the operation is not over (its next attempt is to come).
	Fatal    bool   `json:"fatal"`
	Retrying bool   `json:"retrying"`
	Error    string `json:"error"`
}

// ResourceCounts is the dashboard's view of one resource.
type ResourceCounts struct {
	Resource         string                         `json:"resource"`
	Shadows          int                            `json:"shadows"`
	ByLifecycle      map[domain.Lifecycle]int       `json:"byLifecycle"`
	PendingByStatus  map[domain.ExecutionStatus]int `json:"pendingByStatus"`
	RetryBacklog     int                            `json:"retryBacklog"`
	FailuresLastHour int                            `json:"failuresLastHour"`
}

// NewDashboard starts watching the bucket.
func NewDashboard(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) (*Dashboard, error) {
	if log == nil {
		log = slog.Default()
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: watch %s: %w", kv.Bucket(), err)
	}
	d := newDashboard(log)
	go follow(ctx, w, d.update, d.loaded)
	return d, nil
}

func newDashboard(log *slog.Logger) *Dashboard {
	return &Dashboard{log: log.WithGroup("dashboard"), shadows: map[string]shadowSummary{}, subs: map[chan struct{}]struct{}{}, ready: make(chan struct{})}
}

// update applies one change of the bucket; after the initial load every change is news.
func (d *Dashboard) update(e jetstream.KeyValueEntry) {
	d.apply(e)
	d.changed()
}

// changed notifies subscribers once the initial load is done.
func (d *Dashboard) changed() {
	select {
	case <-d.ready:
		d.notify()
	default:
	}
}

// loaded is called once, when the bucket's values at the start are in.
func (d *Dashboard) loaded() {
	close(d.ready)
	d.notify()
}

func (d *Dashboard) apply(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		d.applyDecoded(e.Key(), nil)
		return
	}
	s, err := decodeEntry(e.Value())
	if err != nil {
		d.log.Error("undecodable shadow in projection", "key", e.Key(), "err", err)
		return
	}
	d.applyDecoded(e.Key(), &s)
}

// entryFields is what the read models watching the bucket need of a shadow. Decoding whole
// shadows (attributes and all) on every update was a tenth of the service's CPU under load, and
// decoding even this much once per read model another 2%: Watch decodes it once for both.
type entryFields struct {
	ShadowID             string            `json:"shadowId"`
	Resource             string            `json:"resource"`
	LifecycleState       domain.Lifecycle  `json:"lifecycleState"`
	PrimaryIdentifiers   domain.Attributes `json:"primaryIdentifiers"`
	SecondaryIdentifiers domain.Attributes `json:"secondaryIdentifiers"`
	PendingOperations    []struct {
		ID    string `json:"id"`
		Delta struct {
			ChangeType domain.ChangeType `json:"changeType"`
		} `json:"delta"`
		Message              string                 `json:"message"`
		Type                 domain.OperationType   `json:"type"`
		ExecutionStatus      domain.ExecutionStatus `json:"executionStatus"`
		ResultStatus         domain.ResultStatus    `json:"resultStatus"`
		LastAttemptTimestamp time.Time              `json:"lastAttemptTimestamp"`
		CompletionTimestamp  time.Time              `json:"completionTimestamp"`
		LastError            *domain.OperationError `json:"lastError"`
	} `json:"pendingOperations"`
}

func decodeEntry(value []byte) (entryFields, error) {
	var s entryFields
	err := json.Unmarshal(value, &s)
	return s, err
}

// applyDecoded records a shadow's summary (s nil: the shadow left the bucket).
func (d *Dashboard) applyDecoded(key string, s *entryFields) {
	if s == nil {
		d.mu.Lock()
		delete(d.shadows, key)
		d.mu.Unlock()
		return
	}
	sum := shadowSummary{id: s.ShadowID, resource: s.Resource, lifecycle: s.LifecycleState,
		login: firstValue(s.SecondaryIdentifiers), uid: firstValue(s.PrimaryIdentifiers)}
	for _, p := range s.PendingOperations {
		if p.ExecutionStatus == domain.StatusCompleted && !p.CompletionTimestamp.IsZero() {
			sum.done = append(sum.done, doneOp{at: p.CompletionTimestamp, result: p.ResultStatus})
		}
		errText := p.Message
		if p.LastError != nil {
			errText = p.LastError.String()
		}
		f := failure{operationID: p.ID, change: p.Delta.ChangeType, err: errText}
		if p.LastError != nil && !p.LastAttemptTimestamp.IsZero() {
			f.at, f.retrying = p.LastAttemptTimestamp, p.ExecutionStatus != domain.StatusCompleted
			sum.failures = append(sum.failures, f)
			f.retrying = false
		}
		if p.ExecutionStatus == domain.StatusCompleted {
			if p.ResultStatus == domain.ResultFatalError {
				f.at, f.fatal = p.CompletionTimestamp, true
				sum.failures = append(sum.failures, f)
			}
			continue
		}
		sum.statuses = append(sum.statuses, p.ExecutionStatus)
		if p.Type == domain.TypeRetry && p.ExecutionStatus == domain.StatusExecuting {
			sum.retries++
		}
	}
	d.mu.Lock()
	d.shadows[key] = sum
	d.mu.Unlock()
}

// notify wakes every subscriber without blocking (a subscriber that has not read yet keeps one
// pending wake-up: updates coalesce).
func (d *Dashboard) notify() {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for ch := range d.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel that receives a value after changes, and a function to stop.
func (d *Dashboard) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}
}

// Counts returns every resource's counts at now (failures in the hour before now), sorted by
// resource name. It waits for the initial load of the bucket.
func (d *Dashboard) Counts(ctx context.Context, now time.Time) ([]ResourceCounts, error) {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	by := map[string]*ResourceCounts{}
	hourAgo := now.Add(-time.Hour)
	for _, s := range d.shadows {
		rc := by[s.resource]
		if rc == nil {
			rc = &ResourceCounts{Resource: s.resource, ByLifecycle: map[domain.Lifecycle]int{}, PendingByStatus: map[domain.ExecutionStatus]int{}}
			by[s.resource] = rc
		}
		rc.Shadows++
		rc.ByLifecycle[s.lifecycle]++
		for _, st := range s.statuses {
			rc.PendingByStatus[st]++
		}
		rc.RetryBacklog += s.retries
		for _, f := range s.failures {
			if f.at.After(hourAgo) {
				rc.FailuresLastHour++
			}
		}
	}
	out := make([]ResourceCounts, 0, len(by))
	for _, rc := range by {
		out = append(out, *rc)
	}
	slices.SortFunc(out, func(a, b ResourceCounts) int { return strings.Compare(a.Resource, b.Resource) })
	return out, nil
}

// RecentFailures returns the newest failures still in the projection, at most n, newest first
// (ties by shadow and operation id, so that a list does not reorder between pushes). It does not
// wait for the initial load: before it, the list is what is loaded so far.
func (d *Dashboard) RecentFailures(n int) []FailureRow {
	d.mu.RLock()
	out := make([]FailureRow, 0, n+1)
	for _, s := range d.shadows {
		for _, f := range s.failures {
			row := FailureRow{Time: f.at, Resource: s.resource, ShadowID: s.id, OperationID: f.operationID, ChangeType: f.change, Fatal: f.fatal, Retrying: f.retrying, Error: f.err}
			i, _ := slices.BinarySearchFunc(out, row, newerFailure)
			if i < n {
				out = slices.Insert(out, i, row)
				if len(out) > n {
					out = out[:n]
				}
			}
		}
	}
	d.mu.RUnlock()
	return out
}

// newerFailure orders failures newest first, then by shadow, operation and kind.
func newerFailure(a, b FailureRow) int {
	if c := b.Time.Compare(a.Time); c != 0 {
		return c
	}
	if c := strings.Compare(a.ShadowID, b.ShadowID); c != 0 {
		return c
	}
	if c := strings.Compare(a.OperationID, b.OperationID); c != 0 {
		return c
	}
	switch {
	case a.Fatal == b.Fatal:
		return 0
	case a.Fatal:
		return -1
	}
	return 1
}

// doneOp is a completed operation: when, and how it ended.
type doneOp struct {
	at     time.Time
	result domain.ResultStatus
}

// firstValue returns the first value of the alphabetically first attribute, as text ("" for none).
func firstValue(a domain.Attributes) string {
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if len(a[n]) > 0 {
			return fmt.Sprint(a[n][0])
		}
	}
	return ""
}

// ShadowQuery selects shadows for the dashboard's list. Text matches the shadow id, the login
// (first secondary identifier) or the uid (first primary identifier), case-insensitively, as a
// substring; empty fields match everything.
type ShadowQuery struct {
	Resource string
	Text     string
	State    domain.Lifecycle
	After    string // the Next of the previous page
	Limit    int    // 1..1000; 0 means 50
}

// ShadowRow is one shadow of the list: what the table shows.
type ShadowRow struct {
	Resource       string           `json:"resource"`
	ShadowID       string           `json:"shadowId"`
	Login          string           `json:"login"`
	UID            string           `json:"uid"`
	LifecycleState domain.Lifecycle `json:"lifecycleState"`
	Pending        int              `json:"pending"` // unfinished operations
}

// ShadowList is a page of the list, in key order (resource, then shadow id).
type ShadowList struct {
	Shadows []ShadowRow `json:"shadows"`
	Total   int         `json:"total"`          // shadows matching the query
	Next    string      `json:"next,omitempty"` // pass as After for the next page
}

// Shadows returns a page of the shadows matching q. It scans the in-memory summaries (no
// JetStream reads) and keeps only the page, so its memory is the page's whatever the matches.
func (d *Dashboard) Shadows(ctx context.Context, q ShadowQuery) (ShadowList, error) {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return ShadowList{}, ctx.Err()
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, 1000)
	text := strings.ToLower(strings.TrimSpace(q.Text))
	type hit struct {
		key string
		row ShadowRow
	}
	var page []hit // sorted by key, at most Limit+1 (the extra one says there is a next page)
	total := 0
	d.mu.RLock()
	for key, s := range d.shadows {
		if (q.Resource != "" && s.resource != q.Resource) || (q.State != "" && s.lifecycle != q.State) {
			continue
		}
		if text != "" && !strings.Contains(strings.ToLower(s.id), text) && !strings.Contains(strings.ToLower(s.login), text) &&
			!strings.Contains(strings.ToLower(s.uid), text) {
			continue
		}
		total++
		if key <= q.After || (len(page) > q.Limit && key >= page[len(page)-1].key) {
			continue
		}
		i, _ := slices.BinarySearchFunc(page, key, func(h hit, k string) int { return strings.Compare(h.key, k) })
		page = slices.Insert(page, i, hit{key, ShadowRow{Resource: s.resource, ShadowID: s.id, Login: s.login, UID: s.uid,
			LifecycleState: s.lifecycle, Pending: len(s.statuses)}})
		if len(page) > q.Limit+1 {
			page = page[:q.Limit+1]
		}
	}
	d.mu.RUnlock()
	out := ShadowList{Shadows: make([]ShadowRow, 0, min(len(page), q.Limit)), Total: total}
	for i, h := range page {
		if i == q.Limit {
			out.Next = page[i-1].key
			break
		}
		out.Shadows = append(out.Shadows, h.row)
	}
	return out, nil
}

// Activity is one resource's completed operations and failed attempts over a Window, one count
// per bucket.
type Activity struct {
	Resource string                        `json:"resource"`
	Outcomes map[domain.ResultStatus][]int `json:"outcomes"` // completed operations by result status
	Failures []int                         `json:"failures"` // failed attempts and fatal completions
}

// Window is a span of time cut in N buckets of Step from Start: bucket i covers
// [Start+i*Step, Start+(i+1)*Step).
type Window struct {
	Start time.Time
	Step  time.Duration
	N     int
}

func (w Window) bucket(t time.Time) int {
	if t.Before(w.Start) {
		return -1
	}
	if i := int(t.Sub(w.Start) / w.Step); i < w.N {
		return i
	}
	return -1
}

// Activity counts, per resource and for each window, the completed operations (by result) and
// the failures still in the projection, in one pass over the shadows. Completed operations stay
// in a shadow for max(pendingOperationGracePeriod, pendingOperationRetentionPeriod) (a day by
// default), so a window up to that long is complete, and survives restarts: it is read from the
// projection, not counted in memory.
func (d *Dashboard) Activity(ctx context.Context, windows ...Window) ([]map[string]*Activity, error) {
	select {
	case <-d.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	out := make([]map[string]*Activity, len(windows))
	for k := range out {
		out[k] = map[string]*Activity{}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, s := range d.shadows {
		for k, w := range windows {
			a := out[k][s.resource]
			if a == nil {
				a = &Activity{Resource: s.resource, Outcomes: map[domain.ResultStatus][]int{}, Failures: make([]int, w.N)}
				out[k][s.resource] = a
			}
			for _, op := range s.done {
				if i := w.bucket(op.at); i >= 0 {
					c := a.Outcomes[op.result]
					if c == nil {
						c = make([]int, w.N)
						a.Outcomes[op.result] = c
					}
					c[i]++
				}
			}
			for _, f := range s.failures {
				if i := w.bucket(f.at); i >= 0 {
					a.Failures[i]++
				}
			}
		}
	}
	return out, nil
}
