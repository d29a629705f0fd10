package app_test

import (
	"testing"

	"shadowbridge/cmd/internal/app"
)

// FuzzParseConfig feeds arbitrary YAML to the config parser and validator: they never panic,
// and a config that validates also builds its resource catalog.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"nats:\n  url: nats://127.0.0.1:4222\n",
		"resources:\n  - name: fs\n    objectClasses:\n      - name: AccountObjectClass\n        secondaryIdentifier: login\n",
		"resources: 3\n", "nats: [\n", "{}", "",
		"target:\n  amqp:\n    url: amqp://u:p@h:5672\n    urls: [amqp://a, amqps://b]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := app.Parse(data)
		if err != nil {
			return
		}
		if cfg.Validate() != nil {
			return
		}
		if _, err := cfg.Catalog(); err != nil {
			t.Fatalf("a valid config has no catalog: %v\n%s", err, data)
		}
	})
}
