package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The registry serves shadowbridge's names in the Prometheus text format, with the Go runtime
// and process collectors, and gauges computed at scrape time.
func TestExposition(t *testing.T) {
	s := New()
	s.Commands.Inc("add", "ok")
	s.Commands.Inc("add", "ok")
	s.CommandDuration.Observe(5*time.Millisecond, "add")
	s.CommandDuration.Observe(2*time.Second, "add")
	s.NewGaugeFunc("shadowbridge_test_gauge", "A gauge.", func() []LabeledValue { return []LabeledValue{{Labels: []string{"r1"}, Value: 3}} }, "resource")
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		"# TYPE shadowbridge_commands_total counter\n",
		`shadowbridge_commands_total{outcome="ok",verb="add"} 2` + "\n",
		`shadowbridge_command_duration_seconds_bucket{verb="add",le="0.005"} 1` + "\n",
		`shadowbridge_command_duration_seconds_bucket{verb="add",le="+Inf"} 2` + "\n",
		`shadowbridge_command_duration_seconds_count{verb="add"} 2` + "\n",
		`shadowbridge_test_gauge{resource="r1"} 3` + "\n",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q", want)
		}
	}
	if s.Commands.Value("add", "ok") != 2 || s.Commands.Value("delete", "ok") != 0 {
		t.Fatal("Value")
	}
	if New().Commands.Value("add", "ok") != 0 {
		t.Fatal("sets share counts")
	}
}
