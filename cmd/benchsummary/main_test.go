package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	in := `goos: linux
BenchmarkAppendSync-2        	       1	3892591409 ns/op	     10320 ops/s	         0.7775 ratio	     13273 raw:ops/s
BenchmarkLoad100Of1M-2   	       1	19843112751 ns/op	         1.544 history_p50:ms	       104.0 p50:us
PASS
`
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	want := `figure append_sync 10320 ops/s
ratio append_sync 0.7775
figure append_sync_raw 13273 ops/s
figure load100_of1_m_history_p50 1.544 ms
figure load100_of1_m_p50 104.0 us
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if err := run(strings.NewReader("PASS\n"), &out); err == nil {
		t.Fatal("empty input accepted")
	}
}
