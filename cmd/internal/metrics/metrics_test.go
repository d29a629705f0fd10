package metrics

import (
	"strings"
	"testing"
	"time"
)

func TestTextFormat(t *testing.T) {
	r := &Registry{}
	c := r.NewCounterVec("x_total", "Things.", "kind")
	c.Inc(`a"b`)
	c.Add(2, "plain")
	h := r.NewHistogramVec("d_seconds", "Durations.", []float64{0.01, 0.1}, "verb")
	h.Observe(5*time.Millisecond, "add")
	h.Observe(50*time.Millisecond, "add")
	h.Observe(time.Second, "add")
	r.NewGaugeFunc("g", "A gauge.", func() map[string]float64 { return map[string]float64{Key("r1"): 3} }, "resource")
	var b strings.Builder
	r.WriteText(&b)
	for _, want := range []string{
		"# TYPE x_total counter\n",
		`x_total{kind="a\"b"} 1` + "\n",
		`x_total{kind="plain"} 2` + "\n",
		"# TYPE d_seconds histogram\n",
		`d_seconds_bucket{verb="add",le="0.01"} 1` + "\n",
		`d_seconds_bucket{verb="add",le="0.1"} 2` + "\n", // cumulative
		`d_seconds_bucket{verb="add",le="+Inf"} 3` + "\n",
		`d_seconds_count{verb="add"} 3` + "\n",
		`d_seconds_sum{verb="add"} 1.055` + "\n",
		`g{resource="r1"} 3` + "\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("missing %q in\n%s", want, b.String())
		}
	}
	if c.Value("plain") != 2 {
		t.Fatal("Value")
	}
	// Sorted by name: d_seconds, g, x_total.
	if i, j := strings.Index(b.String(), "# HELP d_seconds"), strings.Index(b.String(), "# HELP x_total"); i > j {
		t.Fatal("not sorted by name")
	}
}
