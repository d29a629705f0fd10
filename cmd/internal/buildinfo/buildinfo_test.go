package buildinfo

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "0.1.0"}, "shadowbridge 0.1.0"},
		{Info{Version: "0.1.0", GoVersion: "go1.26"}, "shadowbridge 0.1.0 (go1.26)"},
		{Info{Version: "0.1.0", Revision: "0123456789abcdef", Modified: true, Time: "2026-12-07T08:00:00Z", GoVersion: "go1.26"},
			"shadowbridge 0.1.0 (0123456789ab, modified, 2026-12-07T08:00:00Z, go1.26)"},
	} {
		if got := c.in.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.in, got, c.want)
		}
	}
	// The test binary knows at least its Go version.
	if i := Read(); i.Version != Version || !strings.HasPrefix(i.GoVersion, "go") {
		t.Fatalf("Read: %+v", i)
	}
}
