package projections

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"shadowbridge/domain"
)

// ChartWindow is one time window of the dashboard's charts: N buckets of Step seconds from
// Start, the last one holding now.
type ChartWindow struct {
	Start     time.Time                 `json:"start"`
	Step      int                       `json:"stepSeconds"`
	N         int                       `json:"n"`
	Resources map[string]*ResourceChart `json:"resources"`
	Lag       []int                     `json:"projectionLag"` // -1: no sample in the bucket
}

// ResourceChart is one resource's series in a window: completed operations by result and
// failures (from the projection), retry backlog and pending operations by status (sampled; -1
// where no sample fell in the bucket).
type ResourceChart struct {
	Outcomes     map[domain.ResultStatus][]int    `json:"outcomes"`
	Failures     []int                            `json:"failures"`
	RetryBacklog []int                            `json:"retryBacklog"`
	Pending      map[domain.ExecutionStatus][]int `json:"pending"`
}

// ChartWindows are the windows the dashboard offers: the last hour by minute, the last day by
// ten minutes.
var ChartWindows = []struct {
	Name string
	Step time.Duration
	N    int
}{{"hour", time.Minute, 60}, {"day", 10 * time.Minute, 144}}

// Charts returns the dashboard's charts at now for the given resources, by window name.
func Charts(ctx context.Context, d *Dashboard, t *Trend, resources []string, now time.Time) (map[string]ChartWindow, error) {
	out := map[string]ChartWindow{}
	windows := make([]Window, len(ChartWindows))
	for k, w := range ChartWindows {
		windows[k] = Window{Start: now.Truncate(w.Step).Add(-time.Duration(w.N-1) * w.Step), Step: w.Step, N: w.N}
	}
	acts, err := d.Activity(ctx, windows...)
	if err != nil {
		return nil, err
	}
	for k, w := range windows {
		gauges, lag := t.Series(w.Start, w.Step, w.N)
		cw := ChartWindow{Start: w.Start, Step: int(w.Step / time.Second), N: w.N, Resources: map[string]*ResourceChart{}, Lag: lag}
		for _, r := range resources {
			rc := &ResourceChart{Outcomes: map[domain.ResultStatus][]int{}, Failures: make([]int, w.N)}
			if a := acts[k][r]; a != nil {
				rc.Outcomes, rc.Failures = a.Outcomes, a.Failures
			}
			g := gauges[r]
			if g == nil {
				g = emptyGauges(w.N)
			}
			rc.RetryBacklog, rc.Pending = g.RetryBacklog, g.Pending
			cw.Resources[r] = rc
		}
		out[ChartWindows[k].Name] = cw
	}
	return out, nil
}

// ChangeSummary says in one line of at most max bytes what a delta carries: "login=jack,
// fullName=Jack" for an add, "fullName=Jack Sparrow, group+=pirates, group-=crew" for a modify
// (replace, add, delete), "" for a delete.
func ChangeSummary(d domain.Delta, max int) string {
	var parts []string
	switch d.ChangeType {
	case domain.ChangeAdd:
		for _, n := range domain.OrderNames(d.Order, slices.Sorted(maps.Keys(d.Attributes))) {
			parts = append(parts, n+"="+Values(d.Attributes[n]))
		}
	case domain.ChangeModify:
		for _, n := range domain.OrderNames(d.Order, slices.Sorted(maps.Keys(d.Changes))) {
			c := d.Changes[n]
			if c.Replace != nil {
				parts = append(parts, n+"="+Values(c.Replace))
			}
			if len(c.Add) > 0 {
				parts = append(parts, n+"+="+Values(c.Add))
			}
			if len(c.Delete) > 0 {
				parts = append(parts, n+"-="+Values(c.Delete))
			}
		}
	}
	s := strings.Join(parts, ", ")
	if len(s) > max {
		cut := max - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Values writes an attribute's values as people read them: value|value.
func Values(vs []any) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, "|")
}
