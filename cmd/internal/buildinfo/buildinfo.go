// Package buildinfo says which shadowbridge is running: its release version and what the Go
// toolchain recorded in the binary (the commit it was built from, whether the tree had local
// changes, the Go version).
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version is shadowbridge's release version (the micro service reports it too).
const Version = "0.1.0"

// Info is what a binary knows about its build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // the VCS commit; empty when not built from a checkout
	Time      string `json:"time,omitempty"`     // the commit's time (RFC 3339)
	Modified  bool   `json:"modified,omitempty"` // the checkout had uncommitted changes
	GoVersion string `json:"goVersion"`
}

// Read returns the running binary's build information.
func Read() Info {
	i := Info{Version: Version}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	i.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one line `shadowbridge version` prints: "shadowbridge 0.1.0 (abc1234def56,
// modified, 2026-12-07T08:00:00Z, go1.26)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		parts = append(parts, i.Revision[:min(12, len(i.Revision))])
	}
	if i.Modified {
		parts = append(parts, "modified")
	}
	if i.Time != "" {
		parts = append(parts, i.Time)
	}
	if i.GoVersion != "" {
		parts = append(parts, i.GoVersion)
	}
	if len(parts) == 0 {
		return "shadowbridge " + i.Version
	}
	return fmt.Sprintf("shadowbridge %s (%s)", i.Version, strings.Join(parts, ", "))
}
