// Package metrics holds shadowbridge's Prometheus metrics, on prometheus/client_golang: each Set
// has a registry of its own (no global registry), with the Go runtime and process collectors.
// All methods are safe for concurrent use.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// CounterVec is a counter with labels.
type CounterVec struct{ v *prometheus.CounterVec }

// Inc adds one to the series with the given label values.
func (c *CounterVec) Inc(values ...string) { c.v.WithLabelValues(values...).Inc() }

// Value returns the series' current value (0 for a series never incremented).
func (c *CounterVec) Value(values ...string) float64 {
	var m dto.Metric
	if err := c.v.WithLabelValues(values...).Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// HistogramVec is a histogram of durations (in seconds) with labels.
type HistogramVec struct{ v *prometheus.HistogramVec }

// Observe records one duration in the series with the given label values.
func (h *HistogramVec) Observe(d time.Duration, values ...string) {
	h.v.WithLabelValues(values...).Observe(d.Seconds())
}

// DefaultBuckets suit latencies from 100 µs to 10 s.
var DefaultBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Set is the metrics one shadowbridge updates, in a registry of its own (an app has one; tests
// and benchmarks running several apps in one process do not mix their counts).
type Set struct {
	Registry        *prometheus.Registry
	Commands        *CounterVec
	CommandDuration *HistogramVec
	Queries         *CounterVec
	QueryDuration   *HistogramVec
	// Confirmations counts the target systems' answers, whichever transport brought them.
	Confirmations  *CounterVec
	EventsAppended *CounterVec
	BridgeOutcomes *CounterVec
	Timers         *CounterVec
	RecordsSkipped *CounterVec
	// ConfirmationsRefused counts the target's confirmations that could never be stored.
	ConfirmationsRefused *CounterVec
	// ComponentRestarts counts components started again after they ended on their own.
	ComponentRestarts *CounterVec
}

// New returns a fresh set of shadowbridge's metrics, with the Go runtime and process collectors.
func New() *Set {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counter := func(name, help string, labels ...string) *CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		r.MustRegister(v)
		return &CounterVec{v}
	}
	histogram := func(name, help string, labels ...string) *HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: DefaultBuckets}, labels)
		r.MustRegister(v)
		return &HistogramVec{v}
	}
	return &Set{
		Registry:             r,
		Commands:             counter("shadowbridge_commands_total", "Commands answered, by verb and outcome (ok or the error category); unknown: a subject that names no verb.", "verb", "outcome"),
		CommandDuration:      histogram("shadowbridge_command_duration_seconds", "Time to answer a command.", "verb"),
		Queries:              counter("shadowbridge_queries_total", "Queries answered, by query and outcome (ok or the error category).", "query", "outcome"),
		QueryDuration:        histogram("shadowbridge_query_duration_seconds", "Time to answer a query.", "query"),
		Confirmations:        counter("shadowbridge_confirmations_total", "Target systems' confirmations of operations, over AMQP or the confirm command, by resource and outcome (ok, already-done, or the error category).", "resource", "outcome"),
		EventsAppended:       counter("shadowbridge_events_appended_total", "Events stored in the log, by type.", "type"),
		BridgeOutcomes:       counter("shadowbridge_bridge_outcomes_total", "Attempts recorded by the dispatcher, by resource and outcome (sent, failed, postponed).", "resource", "outcome"),
		ConfirmationsRefused: counter("shadowbridge_confirmations_refused_total", "Confirmations from a target refused for good (dead-lettered), by resource and reason (malformed, unknown-operation, invalid); logged at most once per 10 s.", "resource", "reason"),
		RecordsSkipped:       counter("shadowbridge_records_skipped_total", "Records of the log passed over because they cannot be decoded (not written by shadowbridge), by reader; each is logged once.", "reader"),
		ComponentRestarts:    counter("shadowbridge_component_restarts_total", "Components (dispatcher, projector, timers, receivers, ...) started again after they ended on their own, with an error, while the service ran.", "component"),
		Timers:               counter("shadowbridge_timers_total", "Timers armed, cancelled and fired; stale: a record's arming or cancel skipped because a newer decision's schedule is in place; undecodable: a record whose timer events could not be read.", "action"),
	}
}

// Handler serves the set's registry (the text format, or OpenMetrics when the scraper asks).
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: s.Registry})
}

// GaugeFunc is a gauge computed at scrape time: Collect calls fn, which returns one value per
// label-value tuple (each tuple as many values as the gauge has labels).
type GaugeFunc struct {
	desc *prometheus.Desc
	fn   func() []LabeledValue
}

// LabeledValue is one series of a GaugeFunc.
type LabeledValue struct {
	Labels []string
	Value  float64
}

// NewGaugeFunc registers a gauge computed at scrape time.
func (s *Set) NewGaugeFunc(name, help string, fn func() []LabeledValue, labels ...string) {
	s.Registry.MustRegister(&GaugeFunc{desc: prometheus.NewDesc(name, help, labels, nil), fn: fn})
}

// Describe implements prometheus.Collector.
func (g *GaugeFunc) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *GaugeFunc) Collect(ch chan<- prometheus.Metric) {
	for _, v := range g.fn() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v.Value, v.Labels...)
	}
}

var _ prometheus.Collector = (*GaugeFunc)(nil)
