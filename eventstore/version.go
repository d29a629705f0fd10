package eventstore

import (
	"fmt"
	"strconv"
	"strings"

	"shadowbridge/domain"
)

// MinServerVersion is the oldest nats-server shadowbridge runs on: timers are JetStream message
// schedules (2.12), and batched reads ask for the last message of many subjects at once (2.11).
const MinServerVersion = "2.12.0"

// checkServerVersion refuses a server older than MinServerVersion (a configuration error that
// names both versions); version is what the server said it is (nats.Conn.ConnectedServerVersion).
func checkServerVersion(version, url string) error {
	got, ok := parseVersion(version)
	min, _ := parseVersion(MinServerVersion)
	if ok && compareVersions(got, min) >= 0 {
		return nil
	}
	if !ok {
		return fmt.Errorf("%w: the NATS server at %s reports version %q, which shadowbridge cannot read; it needs nats-server %s or newer (message schedules)",
			domain.CategoryConfiguration, url, version, MinServerVersion)
	}
	return fmt.Errorf("%w: the NATS server at %s is nats-server %s; shadowbridge needs %s or newer (its timers are JetStream message schedules)",
		domain.CategoryConfiguration, url, version, MinServerVersion)
}

// parseVersion reads "major.minor.patch" with an optional "-suffix" or "+build".
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func compareVersions(a, b [3]int) int {
	for i := range a {
		if a[i] != b[i] {
			return a[i] - b[i]
		}
	}
	return 0
}
