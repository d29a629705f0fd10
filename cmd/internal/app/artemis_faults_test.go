package app_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/cmd/internal/app"
	"shadowbridge/domain"
	"shadowbridge/eventstore/natstest"
)

func fsConfig(t *testing.T, target string) app.Config {
	t.Helper()
	cfg, err := app.Parse(fmt.Appendf(nil, `
resources:
  - name: fs
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login}]
    target: {amqp: %s}
`, target))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitPendingNotSent waits for the shadow's add to have failed once without reaching the
// broker: still pending as a retry (not failed, not lost), lastError of the given category.
func waitPendingNotSent(t *testing.T, e *env, id string, cat domain.Category) domain.PendingOperation {
	t.Helper()
	waitFor(t, "a failed attempt", 30*time.Second, func() bool { return shadow(t, e.app, id).PendingOperations[0].AttemptNumber >= 1 })
	p := shadow(t, e.app, id).PendingOperations[0]
	if p.Completed() || p.Type != domain.TypeRetry || p.LastError == nil || p.LastError.Category != cat || shadow(t, e.app, id).Dead {
		t.Fatalf("operation %+v (lastError %+v): want a pending retry with a %s error", p, p.LastError, cat)
	}
	waitFor(t, "resource broken", 10*time.Second, func() bool {
		res, err := e.app.Service.ResourceState(t.Context(), "fs")
		return err == nil && res.Availability == domain.AvailabilityBroken
	})
	return p
}

// A broker that refuses the credentials is a security error that loses nothing: the request
// never reached the broker, so the operation waits as a retry and the resource is broken. With
// the right password (a restart with the fixed configuration) it goes through by itself: the
// broken resource is probed, found up, and its postponed operations are retried.
func TestAMQPWrongCredentialsLoseNothing(t *testing.T) {
	for _, b := range amqptest.Matrix(t) {
		t.Run(b.Name, func(t *testing.T) {
			q := b.Queue(t, "auth")
			srv := natstest.Start(t)
			wrong := startOn(t, srv, fsConfig(t, fmt.Sprintf(`{url: "amqp://%s", address: %q, username: shadow, password: wrong}`, b.HostPort(), q)), app.Options{})
			id := add(t, wrong.app, "jack").ShadowID
			p := waitPendingNotSent(t, wrong, id, domain.CategorySecurity)
			if !strings.Contains(p.LastError.Message, "SASL") {
				t.Fatalf("lastError %q does not say the login failed", p.LastError.Message)
			}
			wrong.app.Close()
			right := startOn(t, srv, amqpConfig(t, b.URL, q, "", false), app.Options{})
			waitFor(t, "sent once the password is right", 30*time.Second, func() bool { return shadow(t, right.app, id).Exists })
			m := amqptest.ReceiveN(t, b.Receiver(t, q), 1, 10*time.Second)[0]
			if m.ApplicationProperties["shadowId"] != id {
				t.Fatalf("message of shadow %v", m.ApplicationProperties["shadowId"])
			}
		})
	}
}

// A request queue that does not exist, with auto-creation off: the error names the address, the
// resource is broken and operations stay pending; creating the queue lets them through.
func TestArtemisMissingQueueKeepsOperationsPending(t *testing.T) {
	b := amqptest.Start(t)
	q := amqptest.Unique("nocreate.requests") // the test instance creates nothing under nocreate.
	e := start(t, amqpConfig(t, b.URL, q, "", false), app.Options{})
	var ids []string
	for i := range 3 {
		ids = append(ids, add(t, e.app, fmt.Sprint("m", i)).ShadowID)
	}
	p := waitPendingNotSent(t, e, ids[0], domain.CategoryConfiguration)
	if !strings.Contains(p.LastError.Message, q) || !strings.Contains(p.LastError.Message, "not-found") {
		t.Fatalf("lastError %q: must name the address and say it was not found", p.LastError.Message)
	}
	b.CreateQueue(t, q)
	r := b.Receiver(t, q)
	waitFor(t, "every operation sent once the queue exists", 30*time.Second, func() bool {
		for _, id := range ids {
			if !shadow(t, e.app, id).Exists {
				return false
			}
		}
		return true
	})
	amqptest.ReceiveN(t, r, len(ids), 10*time.Second)
	waitFor(t, "resource up", 10*time.Second, func() bool {
		res, err := e.app.Service.ResourceState(t.Context(), "fs")
		return err == nil && res.Availability == domain.AvailabilityUp
	})
}

// amqps with the CA that signed the broker's certificate: sends verify it and go through. With
// another CA the connection is refused clearly (security), and nothing is lost.
func TestArtemisTLS(t *testing.T) {
	b := amqptest.Start(t)
	url, ca := b.TLS(t)
	q := b.Queue(t, "tls")
	e := start(t, fsConfig(t, fmt.Sprintf(`{url: %q, address: %q, tls: {ca: %q}}`, url, q, ca)), app.Options{})
	id := add(t, e.app, "secure").ShadowID
	waitFor(t, "sent over amqps", 20*time.Second, func() bool { return shadow(t, e.app, id).Exists })
	amqptest.ReceiveN(t, b.Receiver(t, q), 1, 10*time.Second)

	other := start(t, fsConfig(t, fmt.Sprintf(`{url: %q, address: %q, tls: {ca: %q}}`, url, q, otherCA(t))), app.Options{})
	id = add(t, other.app, "insecure").ShadowID
	p := waitPendingNotSent(t, other, id, domain.CategorySecurity)
	if !strings.Contains(p.LastError.Message, "certificate") {
		t.Fatalf("lastError %q does not say the certificate is not trusted", p.LastError.Message)
	}
}

// otherCA writes a CA certificate that signed nothing the broker has.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "another CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
