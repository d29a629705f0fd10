package projections_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore/storetest"
	"shadowbridge/projections"
)

// The dashboard's list of all shadows: search by login, uid or id (any case), by state and
// resource, paged in key order with every shadow on exactly one page; the charts' activity
// counts completed operations by result and failures in their time buckets.
func TestDashboardListAndActivity(t *testing.T) {
	f := setup(t)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 30 {
		id := storetest.NewID()
		ids = append(ids, id)
		d := domain.ShadowData{ShadowID: id, Resource: "demo", ObjectClass: "AccountObjectClass", LifecycleState: domain.LifecycleLive,
			SecondaryIdentifiers: domain.Attributes{"login": {fmt.Sprintf("u%02d", i)}}, PrimaryIdentifiers: domain.Attributes{"uid": {fmt.Sprintf("UID-%d", 1000+i)}}}
		if i%10 == 0 {
			d.LifecycleState = domain.LifecycleProposed
			d.PendingOperations = append(d.PendingOperations, domain.PendingOperation{ID: storetest.NewID(), ExecutionStatus: domain.StatusRequested})
		}
		// Shadow i completed an operation i minutes ago, every third with a fatal error.
		res, msg := domain.ResultSuccess, ""
		if i%3 == 0 {
			res, msg = domain.ResultFatalError, fmt.Sprint("refused ", i)
		}
		d.PendingOperations = append(d.PendingOperations, domain.PendingOperation{ID: storetest.NewID(), ExecutionStatus: domain.StatusCompleted,
			ResultStatus: res, CompletionTimestamp: now.Add(-time.Duration(i) * time.Minute), Message: msg})
		b, _ := json.Marshal(d)
		if _, err := f.kv.Put(t.Context(), "demo."+id, b); err != nil {
			t.Fatal(err)
		}
	}
	dash, err := projections.NewDashboard(t.Context(), f.kv, nil)
	if err != nil {
		t.Fatal(err)
	}
	byIndex := slices.Clone(ids)
	slices.Sort(ids)
	var seen []string
	after, pages := "", 0
	for {
		page, err := dash.Shadows(t.Context(), projections.ShadowQuery{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if page.Total != 30 {
			t.Fatalf("total %d", page.Total)
		}
		for _, r := range page.Shadows {
			seen = append(seen, r.ShadowID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if pages != 5 || !slices.Equal(seen, ids) {
		t.Fatalf("%d pages, %d shadows in order %v", pages, len(seen), slices.Equal(seen, ids))
	}
	for _, c := range []struct {
		q    projections.ShadowQuery
		want int
	}{
		{projections.ShadowQuery{Text: "U1"}, 10},      // u10..u19
		{projections.ShadowQuery{Text: "uid-1007"}, 1}, // by uid, any case
		{projections.ShadowQuery{Text: ids[3][:13]}, 1},
		{projections.ShadowQuery{State: domain.LifecycleProposed}, 3},
		{projections.ShadowQuery{State: domain.LifecycleProposed, Text: "u2"}, 1},
		{projections.ShadowQuery{Resource: "other"}, 0},
		{projections.ShadowQuery{Text: "nobody"}, 0},
	} {
		page, err := dash.Shadows(t.Context(), c.q)
		if err != nil || page.Total != c.want || len(page.Shadows) != c.want {
			t.Errorf("%+v: total %d, %d rows, %v; want %d", c.q, page.Total, len(page.Shadows), err, c.want)
		}
	}
	if page, _ := dash.Shadows(t.Context(), projections.ShadowQuery{Text: "u05"}); len(page.Shadows) != 1 || page.Shadows[0].Login != "u05" ||
		page.Shadows[0].UID != "UID-1005" || page.Shadows[0].LifecycleState != domain.LifecycleLive {
		t.Fatalf("row: %+v", page.Shadows)
	}

	// The last 10 minutes by minute: shadows 0..9 completed in buckets 9..0.
	start := now.Add(-9 * time.Minute)
	acts, err := dash.Activity(t.Context(), projections.Window{Start: start, Step: time.Minute, N: 10})
	if err != nil {
		t.Fatal(err)
	}
	a := acts[0]["demo"]
	fatal, success := a.Outcomes[domain.ResultFatalError], a.Outcomes[domain.ResultSuccess]
	// Shadow i lands in bucket 9-i: fatal for i = 0, 3, 6, 9.
	wantFatal := []int{1, 0, 0, 1, 0, 0, 1, 0, 0, 1}
	for i := range 10 {
		if fatal[i] != wantFatal[i] || success[i] != 1-wantFatal[i] {
			t.Fatalf("bucket %d: fatal %v success %v", i, fatal, success)
		}
	}
	if sum(a.Failures) != 4 { // fatal completions count as failures
		t.Fatalf("failures %v", a.Failures)
	}

	// Recent failures, newest first and at most n: the fatal completions of shadows 0, 3, 6.
	recent := dash.RecentFailures(3)
	if len(recent) != 3 {
		t.Fatalf("recent failures: %+v", recent)
	}
	for k, r := range recent {
		i := 3 * k
		if r.ShadowID != byIndex[i] || !r.Fatal || r.Error != fmt.Sprint("refused ", i) || !r.Time.Equal(now.Add(-time.Duration(i)*time.Minute)) {
			t.Errorf("recent failure %d: %+v, want shadow %d's fatal error", k, r, i)
		}
	}
	if all := dash.RecentFailures(100); len(all) != 10 {
		t.Errorf("%d failures in the projection, want 10", len(all))
	}

	charts, err := projections.Charts(t.Context(), dash, projections.NewTrend(10), []string{"demo", "idle"}, now)
	if err != nil {
		t.Fatal(err)
	}
	hour := charts["hour"]
	if hour.N != 60 || sum(hour.Resources["demo"].Outcomes[domain.ResultSuccess])+sum(hour.Resources["demo"].Outcomes[domain.ResultFatalError]) != 30 {
		t.Fatalf("hour window: %+v", hour.Resources["demo"].Outcomes)
	}
	if idle := hour.Resources["idle"]; idle == nil || len(idle.Failures) != 60 || idle.RetryBacklog[0] != -1 {
		t.Fatalf("a resource without shadows gets empty series: %+v", idle)
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// Trend keeps the last samples in a ring; a bucket without a sample is -1, not 0.
func TestTrendSeries(t *testing.T) {
	tr := projections.NewTrend(3)
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := range 5 { // samples at minutes 0..4; the ring keeps 2, 3, 4
		tr.Record(t0.Add(time.Duration(i)*time.Minute), []projections.ResourceCounts{{Resource: "demo", RetryBacklog: 10 + i,
			PendingByStatus: map[domain.ExecutionStatus]int{domain.StatusExecuting: i}}}, uint64(100+i))
	}
	g, lag := tr.Series(t0, time.Minute, 6)
	if want := []int{-1, -1, 102, 103, 104, -1}; !slices.Equal(lag, want) {
		t.Fatalf("lag %v, want %v", lag, want)
	}
	if want := []int{-1, -1, 12, 13, 14, -1}; !slices.Equal(g["demo"].RetryBacklog, want) {
		t.Fatalf("retry %v, want %v", g["demo"].RetryBacklog, want)
	}
	if want := []int{-1, -1, 2, 3, 4, -1}; !slices.Equal(g["demo"].Pending[domain.StatusExecuting], want) {
		t.Fatalf("executing %v", g["demo"].Pending[domain.StatusExecuting])
	}
	if want := []int{-1, -1, 0, 0, 0, -1}; !slices.Equal(g["demo"].Pending[domain.StatusRequested], want) {
		t.Fatalf("requested %v", g["demo"].Pending[domain.StatusRequested])
	}
}

func TestChangeSummary(t *testing.T) {
	for _, c := range []struct {
		d    domain.Delta
		max  int
		want string
	}{
		{domain.Delta{ChangeType: domain.ChangeAdd, Attributes: domain.Attributes{"login": {"jack"}, "fullName": {"Jack"}}, Order: []string{"login", "fullName"}}, 80, "login=jack, fullName=Jack"},
		{domain.Delta{ChangeType: domain.ChangeModify, Changes: domain.Changes{"group": {Add: []any{"a", "b"}, Delete: []any{"c"}}, "fullName": {Replace: []any{"J"}}}}, 80, "fullName=J, group+=a|b, group-=c"},
		{domain.Delta{ChangeType: domain.ChangeDelete}, 80, ""},
		{domain.Delta{ChangeType: domain.ChangeAdd, Attributes: domain.Attributes{"name": {"ééééé"}}}, 10, "name=é…"},
	} {
		if got := projections.ChangeSummary(c.d, c.max); got != c.want {
			t.Errorf("%+v: %q, want %q", c.d, got, c.want)
		}
	}
}

// A pending table row says how old the oldest unfinished operation is, when the next retry is
// due and the newest error of an unfinished operation (a completed one's is history).
func TestPendingRowSaysWhyWorkWaits(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	sd := domain.ShadowData{ShadowID: "s", Resource: "demo", LifecycleState: domain.LifecycleLive, PendingOperations: []domain.PendingOperation{
		{ID: "done", ExecutionStatus: domain.StatusCompleted, RequestTimestamp: t0.Add(-time.Hour), LastAttemptTimestamp: t0.Add(time.Hour),
			LastError: &domain.OperationError{Category: domain.CategorySchema, Message: "old"}},
		{ID: "a", Type: domain.TypeRetry, ExecutionStatus: domain.StatusExecuting, RequestTimestamp: t0.Add(2 * time.Minute), AttemptNumber: 2,
			LastAttemptTimestamp: t0.Add(5 * time.Minute), LastError: &domain.OperationError{Category: domain.CategoryCommunication, Message: "first"}},
		{ID: "b", Type: domain.TypeRetry, ExecutionStatus: domain.StatusExecuting, RequestTimestamp: t0, AttemptNumber: 1,
			LastAttemptTimestamp: t0.Add(7 * time.Minute), LastError: &domain.OperationError{Category: domain.CategoryCommunication, Message: "communication: newest"}},
	}}
	due := t0.Add(30 * time.Minute)
	row := projections.NewPendingRow(sd, func(domain.ShadowData) (time.Time, bool) { return due, true })
	if !row.Since.Equal(t0) || !row.NextAttempt.Equal(due) || row.LastError != "communication: newest" || !row.LastErrorAt.Equal(t0.Add(7*time.Minute)) || len(row.PendingOperations) != 2 {
		t.Fatalf("row %+v", row)
	}
	if row := projections.NewPendingRow(sd, nil); !row.NextAttempt.IsZero() {
		t.Fatalf("no next attempt function, next attempt %v", row.NextAttempt)
	}
	if b, _ := json.Marshal(projections.NewPendingRow(domain.ShadowData{ShadowID: "x"}, nil)); string(b) != `{"resource":"","shadowId":"x","lifecycleState":"","pendingOperations":[]}` {
		t.Fatalf("a row without pending operations: %s", b)
	}
}
