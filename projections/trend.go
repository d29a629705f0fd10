package projections

import (
	"sync"
	"time"

	"shadowbridge/domain"
)

// Trend remembers gauges sampled over time (the retry backlog and pending operations per
// resource, the projection's lag) for the dashboard's charts. It lives in memory: after a
// restart the charts of these gauges start empty, while the outcome and failure charts
// (Dashboard.Activity) come back from the projection. Safe for concurrent use.
type Trend struct {
	mu      sync.Mutex
	samples []trendSample // a ring of at most cap entries, oldest first from head
	head    int
	cap     int
}

type trendSample struct {
	at        time.Time
	lag       uint64
	resources map[string]trendGauges
}

type trendGauges struct {
	retry   int
	pending map[domain.ExecutionStatus]int
}

// NewTrend returns a Trend keeping the last capacity samples (at one every 10 s, 8,640 is a day).
func NewTrend(capacity int) *Trend {
	return &Trend{cap: max(capacity, 1)}
}

// Record adds a sample taken at t.
func (t *Trend) Record(at time.Time, counts []ResourceCounts, lag uint64) {
	s := trendSample{at: at, lag: lag, resources: make(map[string]trendGauges, len(counts))}
	for _, c := range counts {
		p := make(map[domain.ExecutionStatus]int, len(c.PendingByStatus))
		for k, v := range c.PendingByStatus {
			p[k] = v
		}
		s.resources[c.Resource] = trendGauges{retry: c.RetryBacklog, pending: p}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < t.cap {
		t.samples = append(t.samples, s)
		return
	}
	t.samples[t.head] = s
	t.head = (t.head + 1) % t.cap
}

// Gauges is what Series returns for one resource: per bucket, the last sample's value in it, or
// -1 where no sample fell in the bucket (before the service started, or while it was down).
type Gauges struct {
	RetryBacklog []int                            `json:"retryBacklog"`
	Pending      map[domain.ExecutionStatus][]int `json:"pending"`
}

// Series returns the samples in [start, start+n*step) in n buckets of step: per resource the
// retry backlog and the pending operations by status, and the projection's lag.
func (t *Trend) Series(start time.Time, step time.Duration, n int) (map[string]*Gauges, []int) {
	empty := func() []int {
		s := make([]int, n)
		for i := range s {
			s[i] = -1
		}
		return s
	}
	out := map[string]*Gauges{}
	lag := empty()
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.samples {
		s := t.samples[(t.head+k)%len(t.samples)]
		if s.at.Before(start) {
			continue
		}
		i := int(s.at.Sub(start) / step)
		if i >= n {
			continue
		}
		lag[i] = int(s.lag)
		for r, g := range s.resources {
			o := out[r]
			if o == nil {
				o = emptyGauges(n)
				out[r] = o
			}
			o.RetryBacklog[i] = g.retry
			for st, series := range o.Pending {
				series[i] = g.pending[st]
			}
		}
	}
	return out, lag
}

// emptyGauges returns gauges of n buckets without samples.
func emptyGauges(n int) *Gauges {
	none := func() []int {
		s := make([]int, n)
		for i := range s {
			s[i] = -1
		}
		return s
	}
	g := &Gauges{RetryBacklog: none(), Pending: map[domain.ExecutionStatus][]int{}}
	for _, st := range []domain.ExecutionStatus{domain.StatusRequested, domain.StatusExecutionPending, domain.StatusExecuting} {
		g.Pending[st] = none()
	}
	return g
}
