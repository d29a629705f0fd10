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
	"shadowbridge/eventstore/natstest"
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
	tlsDir := t.TempDir()
	natstest.CA(t, tlsDir)
	t.Setenv("NATS_TLS_CERT", filepath.Join(tlsDir, "server.pem"))
	t.Setenv("NATS_TLS_KEY", filepath.Join(tlsDir, "server-key.pem"))
	t.Setenv("NATS_TLS_CA", filepath.Join(tlsDir, "ca.pem"))
	opts, err := server.ProcessConfigFile(filepath.Join(root, "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !opts.JetStream || opts.MaxPayload < 2<<20 || opts.TLSConfig == nil {
		t.Fatalf("nats-server.conf: jetstream %v max_payload %d tls %v", opts.JetStream, opts.MaxPayload, opts.TLSConfig != nil)
	}
	// The cluster node: clients and routes over TLS, the routes verified.
	copts, err := server.ProcessConfigFile(filepath.Join(root, "nats", "cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if copts.TLSConfig == nil || copts.Cluster.TLSConfig == nil || len(copts.Routes) != 3 {
		t.Fatalf("cluster.conf: client tls %v, route tls %v, %d routes", copts.TLSConfig != nil, copts.Cluster.TLSConfig != nil, len(copts.Routes))
	}
	c, err := app.Load(filepath.Join(root, "shadowbridge.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// The unit hands the example's password file to the service (LoadCredential=NAME:...), where
	// the example's passwordFile finds it.
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "shadowbridge.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nLoadCredential="+c.NATS.PasswordFile+":") {
		t.Fatalf("the unit does not load the credential %q the example names", c.NATS.PasswordFile)
	}
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, c.NATS.PasswordFile), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadSecrets(func(k string) string { return map[string]string{"CREDENTIALS_DIRECTORY": creds}[k] }); err != nil || c.NATS.Password != "pw" {
		t.Fatalf("the example's secrets: %v %q", err, c.NATS.Password)
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

// Secrets can live outside the configuration: a *File key names a file holding the secret,
// looked up in systemd's $CREDENTIALS_DIRECTORY when relative; the environment can name them
// too. A secret given twice, a missing or empty file are errors that name the key and the file,
// never the secret.
func TestSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"nats-password": "n4ts-pw\n", "http-token": "0123456789abcdef0123\n", "amqp-password": "amqp-pw", "empty": "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := app.Parse([]byte(`
nats: {url: "nats://n:4222", user: sb, passwordFile: nats-password}
http: {listen: "0.0.0.0:8080", tokenFile: http-token}
resources:
  - name: fs
    objectClasses: [{name: A, secondaryIdentifier: login}]
    target: {amqp: {url: "amqp://a:5672", address: q, username: u, passwordFile: ` + filepath.Join(dir, "amqp-password") + `}}
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CREDENTIALS_DIRECTORY": dir}
	if err := c.LoadSecrets(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if c.NATS.Password != "n4ts-pw" || c.HTTP.Token != "0123456789abcdef0123" || c.Resources[0].Target.AMQP.Password != "amqp-pw" {
		t.Fatalf("secrets: %q %q %q", c.NATS.Password, c.HTTP.Token, c.Resources[0].Target.AMQP.Password)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	// From the environment: a file for the NATS password, the token itself.
	c2, _ := app.Parse([]byte("nats: {url: \"nats://n:4222\", user: sb}\nresources:\n  - name: x\n    objectClasses: [{name: A, secondaryIdentifier: login}]\n    target: {sample: {}}\n"))
	env2 := map[string]string{"SHADOWBRIDGE_NATS_PASSWORD_FILE": filepath.Join(dir, "nats-password"), "SHADOWBRIDGE_HTTP_TOKEN": "from-the-environment-1234"}
	if err := c2.LoadSecrets(func(k string) string { return env2[k] }); err != nil || c2.NATS.Password != "n4ts-pw" || c2.HTTP.Token != "from-the-environment-1234" {
		t.Fatalf("from the environment: %v %q %q", err, c2.NATS.Password, c2.HTTP.Token)
	}
	// Refusals.
	c3, _ := app.Parse([]byte("nats: {url: \"nats://n:4222\", user: sb, password: inline-secret, passwordFile: nats-password}\nhttp: {listen: \"127.0.0.1:8080\", tokenFile: missing}\nresources:\n  - name: x\n    objectClasses: [{name: A, secondaryIdentifier: login}]\n    target: {amqp: {url: \"amqp://a:5672\", address: q, passwordFile: empty}}\n"))
	err = c3.LoadSecrets(func(k string) string { return env[k] })
	for _, want := range []string{"nats.passwordFile: give the secret inline or in a file, not both", "http.tokenFile: read " + filepath.Join(dir, "missing") + ": no such file",
		"resources[0] (x): target.amqp.passwordFile: " + filepath.Join(dir, "empty") + " is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	if err != nil && (strings.Contains(err.Error(), "inline-secret") || strings.Contains(err.Error(), "n4ts-pw")) {
		t.Errorf("a secret in an error: %v", err)
	}
}
