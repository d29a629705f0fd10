package bridge

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"shadowbridge/domain"
)

func TestScrubberHidesSecretsAndKeepsTheChain(t *testing.T) {
	for _, c := range []struct{ password, url string }{
		{"", "amqp://user:p%40ss-w0rd@broker:5672"},
		{"p@ss-w0rd", "amqp://broker:5672"},
		{"", "amqp://user:p@ss-w0rd@[::1/"}, // does not parse
	} {
		s := newScrubber(c.password, c.url)
		inner := fmt.Errorf("%w: parse %q: missing ']' (password p@ss-w0rd, escaped p%%40ss-w0rd)", domain.CategoryCommunication, c.url)
		err := s.err(inner)
		if strings.Contains(err.Error(), "ss-w0rd") {
			t.Errorf("%+v: %s", c, err)
		}
		if !errors.Is(err, domain.CategoryCommunication) {
			t.Errorf("%+v: category lost", c)
		}
	}
	if newScrubber("", "amqp://broker:5672").err(errors.New("x")).Error() != "x" {
		t.Error("an error without secrets changed")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"amqp://user:secret@broker:5672": "amqp://user:xxxxx@broker:5672",
		"amqp://broker:5672":             "amqp://broker:5672",
		"amqp://user:secret@[::1/":       "amqp://***@[::1/",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
