// Package metrics is a small Prometheus text-format registry: labelled counters, gauges read at
// scrape time, and histograms. The whole exposition format shadowbridge needs fits in this file,
// so no client library is pulled in. All methods are safe for concurrent use.
package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Registry holds metrics and writes them in the Prometheus text format (version 0.0.4).
type Registry struct {
	mu      sync.Mutex
	metrics []metric
}

type metric interface {
	name() string
	write(w io.Writer)
}

func (r *Registry) add(m metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, m)
}

// WriteText writes every metric, sorted by name.
func (r *Registry) WriteText(w io.Writer) {
	r.mu.Lock()
	ms := slices.Clone(r.metrics)
	r.mu.Unlock()
	slices.SortFunc(ms, func(a, b metric) int { return strings.Compare(a.name(), b.name()) })
	for _, m := range ms {
		m.write(w)
	}
}

// labelKey joins label values; it never appears in the output.
func labelKey(values []string) string { return strings.Join(values, "\x00") }

func labelText(names, values []string, extra ...string) string {
	var parts []string
	for i, n := range names {
		parts = append(parts, n+`="`+escape(values[i])+`"`)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		parts = append(parts, extra[i]+`="`+escape(extra[i+1])+`"`)
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func escape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// CounterVec is a counter with labels.
type CounterVec struct {
	n, help string
	labels  []string
	mu      sync.Mutex
	vals    map[string]*counterVal
}

type counterVal struct {
	values []string
	v      float64
}

// NewCounterVec registers a counter named name with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{n: name, help: help, labels: labels, vals: map[string]*counterVal{}}
	r.add(c)
	return c
}

// Add adds delta to the counter with these label values (in the order of the label names).
func (c *CounterVec) Add(delta float64, values ...string) {
	if len(values) != len(c.labels) {
		panic(fmt.Sprintf("metrics: %s wants %d label values, got %d", c.n, len(c.labels), len(values)))
	}
	k := labelKey(values)
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.vals[k]
	if !ok {
		v = &counterVal{values: slices.Clone(values)}
		c.vals[k] = v
	}
	v.v += delta
}

// Inc adds one.
func (c *CounterVec) Inc(values ...string) { c.Add(1, values...) }

// Value returns the current value for these label values (tests).
func (c *CounterVec) Value(values ...string) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.vals[labelKey(values)]; ok {
		return v.v
	}
	return 0
}

func (c *CounterVec) name() string { return c.n }

func (c *CounterVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", c.n, c.help, c.n)
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.vals))
	for k := range c.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := c.vals[k]
		fmt.Fprintf(w, "%s%s %s\n", c.n, labelText(c.labels, v.values), num(v.v))
	}
}

// GaugeFunc is a gauge read at scrape time; fn returns label values -> value.
type GaugeFunc struct {
	n, help string
	labels  []string
	fn      func() map[string]float64 // key: label values joined by labelKey
}

// NewGaugeFunc registers a gauge computed at scrape time. fn returns the value of each label
// combination, keyed by the label values joined with Key.
func (r *Registry) NewGaugeFunc(name, help string, fn func() map[string]float64, labels ...string) {
	r.add(&GaugeFunc{n: name, help: help, labels: labels, fn: fn})
}

// Key joins label values for a GaugeFunc's map.
func Key(values ...string) string { return labelKey(values) }

func (g *GaugeFunc) name() string { return g.n }

func (g *GaugeFunc) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", g.n, g.help, g.n)
	vals := g.fn()
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var values []string
		if len(g.labels) > 0 {
			values = strings.Split(k, "\x00")
		}
		fmt.Fprintf(w, "%s%s %s\n", g.n, labelText(g.labels, values), num(vals[k]))
	}
}

// HistogramVec is a histogram with labels and fixed buckets (upper bounds, in seconds).
type HistogramVec struct {
	n, help string
	labels  []string
	buckets []float64
	mu      sync.Mutex
	vals    map[string]*histVal
}

type histVal struct {
	values []string
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

// DefaultBuckets suit latencies from 100 µs to 10 s.
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewHistogramVec registers a histogram.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	h := &HistogramVec{n: name, help: help, labels: labels, buckets: buckets, vals: map[string]*histVal{}}
	r.add(h)
	return h
}

// Observe records d for these label values.
func (h *HistogramVec) Observe(d time.Duration, values ...string) {
	s := d.Seconds()
	k := labelKey(values)
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.vals[k]
	if !ok {
		v = &histVal{values: slices.Clone(values), counts: make([]uint64, len(h.buckets))}
		h.vals[k] = v
	}
	if i, _ := slices.BinarySearch(h.buckets, s); i < len(h.buckets) {
		v.counts[i]++
	}
	v.count++
	v.sum += s
}

func (h *HistogramVec) name() string { return h.n }

func (h *HistogramVec) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.n, h.help, h.n)
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := make([]string, 0, len(h.vals))
	for k := range h.vals {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := h.vals[k]
		var cum uint64
		for i, b := range h.buckets {
			cum += v.counts[i]
			fmt.Fprintf(w, "%s_bucket%s %d\n", h.n, labelText(h.labels, v.values, "le", num(b)), cum)
		}
		fmt.Fprintf(w, "%s_bucket%s %d\n", h.n, labelText(h.labels, v.values, "le", "+Inf"), v.count)
		fmt.Fprintf(w, "%s_sum%s %s\n", h.n, labelText(h.labels, v.values), num(v.sum))
		fmt.Fprintf(w, "%s_count%s %d\n", h.n, labelText(h.labels, v.values), v.count)
	}
}

func num(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Set is the metrics one shadowbridge updates, in a registry of its own (an app has one; tests
// and benchmarks running several apps in one process do not mix their counts).
type Set struct {
	Registry        *Registry
	Commands        *CounterVec
	CommandDuration *HistogramVec
	EventsAppended  *CounterVec
	BridgeOutcomes  *CounterVec
	Timers          *CounterVec
}

// New returns a fresh set of shadowbridge's metrics.
func New() *Set {
	r := &Registry{}
	return &Set{
		Registry:        r,
		Commands:        r.NewCounterVec("shadowbridge_commands_total", "Commands and queries answered, by verb and outcome (ok or the error category).", "verb", "outcome"),
		CommandDuration: r.NewHistogramVec("shadowbridge_command_duration_seconds", "Time to answer a command or query.", DefaultBuckets, "verb"),
		EventsAppended:  r.NewCounterVec("shadowbridge_events_appended_total", "Events stored in the log, by type.", "type"),
		BridgeOutcomes:  r.NewCounterVec("shadowbridge_bridge_outcomes_total", "Attempts recorded by the dispatcher, by resource and outcome (sent, failed, postponed).", "resource", "outcome"),
		Timers:          r.NewCounterVec("shadowbridge_timers_total", "Timers armed, cancelled and fired.", "action"),
	}
}
