package eventstore

import (
	"errors"
	"strings"
	"testing"

	"shadowbridge/domain"
)

func TestServerVersionCheck(t *testing.T) {
	for _, c := range []struct {
		version string
		ok      bool
	}{
		{"2.12.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.12.1-beta.1", true}, {"v2.13.0", true},
		{"2.11.9", false}, {"2.10.22", false}, {"1.99.99", false}, {"2.12", false}, {"", false}, {"x.y.z", false},
	} {
		err := checkServerVersion(c.version, "nats://n:4222")
		if (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok=%v", c.version, err, c.ok)
		}
		if err != nil && (!errors.Is(err, domain.CategoryConfiguration) || !strings.Contains(err.Error(), MinServerVersion) || !strings.Contains(err.Error(), "nats://n:4222")) {
			t.Errorf("%q: %v: want a configuration error naming the server and %s", c.version, err, MinServerVersion)
		}
	}
}
