package app_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"shadowbridge/cmd/internal/app"
)

func TestDefaultConfigIsTheDemo(t *testing.T) {
	c := app.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cat, err := c.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	demo, err := cat.Lookup("demo")
	if err != nil {
		t.Fatal(err)
	}
	oc, ok := demo.ObjectClass("AccountObjectClass")
	if !ok || oc.SecondaryIdentifier != "login" || !demo.Confirmations() {
		t.Fatalf("demo resource: %+v", oc)
	}
	if demo.Consistency().OperationRetryPeriod != 30*time.Minute || demo.Consistency().OperationRetryMaxAttempts != 3 {
		t.Fatalf("midPoint defaults: %+v", demo.Consistency())
	}
}

func TestParseAndValidate(t *testing.T) {
	good := `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {nats: {subject: target.fs}}
    consistency: {operationRetryPeriod: 1s, operationRetryMaxAttempts: 0, deadShadowRetentionPeriod: 1h}
`
	c, err := app.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cat, _ := c.Catalog()
	fs, _ := cat.Lookup("fs")
	if got := fs.Consistency(); got.OperationRetryPeriod != time.Second || got.OperationRetryMaxAttempts != 0 ||
		got.DeadShadowRetentionPeriod != time.Hour || got.PendingOperationRetentionPeriod != 24*time.Hour || fs.Confirmations() {
		t.Fatalf("consistency %+v confirmations %v", got, fs.Confirmations())
	}

	bad := `
prefix: "a.b"
nats: {user: u, creds: /x, tls: {cert: c}}
resources:
  - name: "bad name"
    objectClasses: []
    target: {}
    transformation: xml
  - name: twice
    objectClasses: [{name: A, secondaryIdentifier: login}]
    target: {sample: {}, nats: {subject: ""}}
    consistency: {operationRetryMaxAttempts: -1}
  - name: twice
    objectClasses: [{name: A, secondaryIdentifier: login}]
    target: {amqp: {url: ""}}
  - name: both
    objectClasses: [{name: A, secondaryIdentifier: login}]
    target: {amqp: {url: "amqp://a:5672", urls: ["amqp://b:5672", "amqp://u:s3cret@[::1"], address: q}}
  - name: list
    objectClasses: [{name: A, secondaryIdentifier: login}]
    target: {amqp: {urls: ["amqp://b:5672", "amqp://u:s3cret@[::1"], address: q}}
`
	c, err = app.Parse([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"prefix", "creds or user", "cert and key", "bad name", "at least one object class",
		"exactly one of amqp, amqp091, nats, sample", "unknown transformation \"xml\"", "defined twice", "subject is required",
		"operationRetryMaxAttempts", "give url or urls", "address is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() does not report %q:\n%v", want, err)
		}
	}
	for _, want := range []string{"resources[3] (both): target.amqp: give url or urls", "resources[4] (list): configuration: target.amqp.urls[1]: malformed URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() does not report %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate() repeats a password:\n%v", err)
	}
	if _, err := app.Parse([]byte("resources: []\nnatz: {}\n")); err == nil || !strings.Contains(err.Error(), "natz") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := app.Parse([]byte("resources:\n  - name: x\n    consistency: {operationRetryPeriod: soon}\n")); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
}

// The shipped deployment files must stay valid.
func TestDeploymentFilesAreValid(t *testing.T) {
	root := filepath.Join("..", "..", "..", "deployments")
	t.Setenv("SHADOWBRIDGE_NATS_PASSWORD", "x")
	t.Setenv("IDM_NATS_PASSWORD", "y")
	t.Setenv("AUDITOR_NATS_PASSWORD", "z")
	opts, err := server.ProcessConfigFile(filepath.Join(root, "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || opts.MaxPayload < 2<<20 {
		t.Fatalf("nats-server.conf: jetstream %v max_payload %d", opts.JetStream, opts.MaxPayload)
	}
	c, err := app.Load(filepath.Join(root, "shadowbridge.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "systemd", "shadowbridge.service")); err != nil {
		t.Fatal(err)
	}
}

// A configuration's mistakes come back all at once, each with its line and its path in YAML
// names, the closest known key suggested for a misspelt one, a wrong value described in YAML's
// words (not Go types); an empty file says what it needs; the file is named.
func TestConfigErrorsAreAllReportedInYAMLTerms(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sb.yaml")
	if err := os.WriteFile(f, []byte(`nats: {url: "nats://n:4222", replicas: three}
http: {listen: "127.0.0.1:99999"}
resources:
  - name: demo
    objectClases: [{name: A, secondaryIdentifier: login}]
    target: {sample: {}}
    consistency: {operationRetryPeriod: soon, retryOnRecovery: maybe}
  - name: two
    objectClasses: [{name: A, secondaryIdentifier: login, primaryIdentifer: uid}]
    target: {sample: {}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := app.Load(f)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"config " + f + ": ",
		"line 1: \"three\" is a string, want a number",
		"line 5: unknown key resources[0].objectClases (did you mean objectClasses?)",
		"line 7: \"soon\" is not a duration",
		"line 7: \"maybe\" is a string, want true or false",
		"line 9: unknown key resources[1].objectClasses[0].primaryIdentifer (did you mean primaryIdentifier?)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "app.") || strings.Contains(err.Error(), "int") && strings.Contains(err.Error(), "into") {
		t.Errorf("a Go type leaked:\n%v", err)
	}
	// Only unknown keys: what was read is validated as well (the port is out of range).
	if _, err := app.Parse([]byte("http: {listen: \"127.0.0.1:99999\"}\nresources:\n  - name: x\n    objectClasses: [{name: A, secondaryIdentifier: login}]\n    target: {sample: {}}\n    colour: red\n")); err == nil ||
		!strings.Contains(err.Error(), "unknown key resources[0].colour") || !strings.Contains(err.Error(), `http.listen: port "99999" out of range`) {
		t.Fatalf("unknown key and a bad port: %v", err)
	}
	for _, empty := range []string{"", "\n\n", "# nothing yet\n"} {
		if _, err := app.Parse([]byte(empty)); !errors.Is(err, app.ErrEmptyConfig) {
			t.Errorf("%q: %v, want ErrEmptyConfig", empty, err)
		}
	}
}
