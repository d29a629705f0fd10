// Package amqptest gives tests a real AMQP 1.0 broker: Apache Artemis, the production broker,
// started by deployments/artemis/test-broker.sh, and RabbitMQ's AMQP 1.0 plugin
// (deployments/amqp/test-broker.sh) as a second broker for the interop and fault tests (Matrix).
// The environment can name others:
//
//	SHADOWBRIDGE_TEST_AMQP_URL             amqp://shadow:shadow@127.0.0.1:5673 (Artemis)
//	SHADOWBRIDGE_TEST_AMQP_ADDRESS_PREFIX  "" (Artemis: plain queue names)
//	SHADOWBRIDGE_TEST_AMQP_ADMIN           none (Artemis creates the queues); RabbitMQ's HTTP API
//	                                       http://guest:guest@127.0.0.1:15672 declares them
//	SHADOWBRIDGE_TEST_RABBITMQ_URL         amqp://guest:guest@127.0.0.1:5672; "none" leaves
//	                                       RabbitMQ out of the matrix
//	SHADOWBRIDGE_REQUIRE_AMQP=1            fail instead of skipping when a broker does not answer
package amqptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"
)

// Broker describes a broker under test.
type Broker struct {
	Name   string // "artemis", "rabbitmq" or "custom"
	URL    string
	Prefix string
	Admin  string
}

// Artemis reports whether the broker is Apache Artemis (duplicate detection, auto-created
// anycast queues).
func (b Broker) Artemis() bool { return b.Name == "artemis" }

func env(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// Start returns the default broker (Artemis unless the environment names another), skipping
// (or failing, with SHADOWBRIDGE_REQUIRE_AMQP=1) when it does not answer.
func Start(t testing.TB) Broker {
	t.Helper()
	b := Broker{
		Name:   "artemis",
		URL:    env("SHADOWBRIDGE_TEST_AMQP_URL", "amqp://shadow:shadow@127.0.0.1:5673"),
		Prefix: env("SHADOWBRIDGE_TEST_AMQP_ADDRESS_PREFIX", ""),
		Admin:  env("SHADOWBRIDGE_TEST_AMQP_ADMIN", "none"),
	}
	if _, set := os.LookupEnv("SHADOWBRIDGE_TEST_AMQP_URL"); set {
		b.Name = "custom"
	}
	reachable(t, b, "deployments/artemis/test-broker.sh")
	return b
}

// RabbitMQ returns the second broker of the matrix.
func RabbitMQ(t testing.TB) Broker {
	t.Helper()
	b := Broker{Name: "rabbitmq", URL: env("SHADOWBRIDGE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672"),
		Prefix: "/amq/queue/", Admin: "http://guest:guest@127.0.0.1:15672"}
	reachable(t, b, "deployments/amqp/test-broker.sh")
	return b
}

// Matrix returns the brokers the interop and fault tests run on: the default one and RabbitMQ
// (unless SHADOWBRIDGE_TEST_RABBITMQ_URL=none).
func Matrix(t testing.TB) []Broker {
	t.Helper()
	out := []Broker{Start(t)}
	if os.Getenv("SHADOWBRIDGE_TEST_RABBITMQ_URL") != "none" {
		out = append(out, RabbitMQ(t))
	}
	return out
}

func reachable(t testing.TB, b Broker, script string) {
	t.Helper()
	u, err := url.Parse(b.URL)
	if err != nil {
		t.Fatalf("broker URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", u.Host, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("no %s broker at %s (run %s, or set SHADOWBRIDGE_TEST_AMQP_URL): %v", b.Name, u.Host, script, err)
		if os.Getenv("SHADOWBRIDGE_REQUIRE_AMQP") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c.Close()
}

// HostPort returns the broker's host:port.
func (b Broker) HostPort() string {
	u, _ := url.Parse(b.URL)
	return u.Host
}

// Via returns the broker's URL (credentials included) with its address replaced by the proxy's.
func (b Broker) Via(p *Proxy) string { return strings.Replace(b.URL, b.HostPort(), p.Addr(), 1) }

// Queue declares a fresh durable queue for one test and returns its address.
func (b Broker) Queue(t testing.TB, name string) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	q := name + "-" + hex.EncodeToString(r[:])
	if b.Admin != "none" && b.Admin != "" {
		u, err := url.Parse(b.Admin)
		if err != nil {
			t.Fatal(err)
		}
		pass, _ := u.User.Password()
		do := func(method string) {
			req, _ := http.NewRequest(method, fmt.Sprintf("%s://%s/api/queues/%%2F/%s", u.Scheme, u.Host, q), strings.NewReader(`{"durable":true}`))
			req.SetBasicAuth(u.User.Username(), pass)
			req.Header.Set("content-type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("declare queue %s: %v", q, err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 && method == http.MethodPut {
				t.Fatalf("declare queue %s: %s", q, resp.Status)
			}
		}
		do(http.MethodPut)
		t.Cleanup(func() { do(http.MethodDelete) })
	}
	if b.Artemis() {
		// Artemis auto-creates the queue; what a test leaves on it (and the address's duplicate-id
		// cache) would otherwise stay in the broker's 512 MB heap for every later run until it
		// runs out of memory.
		t.Cleanup(func() { b.destroy(t, q) })
	}
	return b.Prefix + q
}

// Destroy removes an Artemis queue a test made under a name of its own (see destroy); on other
// brokers it does nothing.
func (b Broker) Destroy(t testing.TB, q string) {
	if b.Artemis() {
		b.destroy(t, strings.TrimPrefix(q, b.Prefix))
	}
}

// destroy removes an Artemis queue and its address through the broker's management address
// (ActiveMQServerControl.destroyQueue(name, removeConsumers, autoDeleteAddress)) and waits for
// the broker's answer; a failure is only logged, since the test itself is over.
func (b Broker) destroy(t testing.TB, q string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := func() error {
		c, err := amqp.Dial(ctx, b.URL, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := c.NewSession(ctx, nil)
		if err != nil {
			return err
		}
		rcv, err := s.NewReceiver(ctx, "", &amqp.ReceiverOptions{DynamicAddress: true})
		if err != nil {
			return err
		}
		snd, err := s.NewSender(ctx, "activemq.management", nil)
		if err != nil {
			return err
		}
		reply := rcv.Address()
		if err := snd.Send(ctx, &amqp.Message{
			Properties:            &amqp.MessageProperties{ReplyTo: &reply},
			ApplicationProperties: map[string]any{"_AMQ_ResourceName": "broker", "_AMQ_OperationName": "destroyQueue"},
			Value:                 fmt.Sprintf("[%q,true,true]", q),
		}, nil); err != nil {
			return err
		}
		m, err := rcv.Receive(ctx, nil)
		if err != nil {
			return err
		}
		if ok, _ := m.ApplicationProperties["_AMQ_OperationSucceeded"].(bool); !ok {
			return fmt.Errorf("broker answered %v", m.Value)
		}
		return nil
	}()
	if err != nil {
		t.Logf("destroy queue %s: %v", q, err)
	}
}

// Dial connects with the URL's credentials.
func (b Broker) Dial(t testing.TB) *amqp.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := amqp.Dial(ctx, b.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { _ = c.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	return c
}

// session opens a connection of its own and a session on it.
func (b Broker) session(ctx context.Context, t testing.TB) *amqp.Session {
	t.Helper()
	s, err := b.Dial(t).NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Receiver opens a receiver (credit 1000: RabbitMQ 3.10 can stall go-amqp receivers with
// credit 10..500) on address.
func (b Broker) Receiver(t testing.TB, address string) *amqp.Receiver {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := b.session(ctx, t).NewReceiver(ctx, address, &amqp.ReceiverOptions{Credit: 1000, SourceCapabilities: []string{"queue"}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Sender opens a sender on address.
func (b Broker) Sender(t testing.TB, address string) *amqp.Sender {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snd, err := b.session(ctx, t).NewSender(ctx, address, &amqp.SenderOptions{TargetCapabilities: []string{"queue"}})
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

// ReceiveN receives and accepts n messages, failing after timeout.
func ReceiveN(t testing.TB, r *amqp.Receiver, n int, timeout time.Duration) []*amqp.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*amqp.Message
	for len(out) < n {
		m, err := r.Receive(ctx, nil)
		if err != nil {
			t.Fatalf("received %d of %d messages: %v", len(out), n, err)
		}
		if err := r.AcceptMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// UUID parses a canonical UUID for use as a message-id or correlation-id.
func UUID(t testing.TB, s string) amqp.UUID {
	t.Helper()
	var u amqp.UUID
	h := strings.ReplaceAll(s, "-", "")
	if _, err := hex.Decode(u[:], []byte(h)); err != nil || len(h) != 32 {
		t.Fatalf("not a UUID: %q", s)
	}
	return u
}

// ArtemisDir is where deployments/artemis/test-broker.sh keeps Artemis and its instances.
func ArtemisDir() string {
	if d := os.Getenv("SHADOWBRIDGE_ARTEMIS_DIR"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "shadowbridge", "artemis")
}

// artemisOnly skips a test that needs the test script's Artemis instance when the broker under
// test is another; with SHADOWBRIDGE_REQUIRE_AMQP=1 (the README's test command) it fails
// instead, whatever the broker: no Artemis test may silently not run.
func (b Broker) artemisOnly(t testing.TB) {
	t.Helper()
	if !b.Artemis() {
		msg := fmt.Sprintf("needs the Artemis instance of deployments/artemis/test-broker.sh, not the %s broker at %s", b.Name, b.HostPort())
		if os.Getenv("SHADOWBRIDGE_REQUIRE_AMQP") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// Artemis returns the test script's Artemis instance (see Start), for a test of Artemis' own
// behaviour: skipped on another broker, failed on one with SHADOWBRIDGE_REQUIRE_AMQP=1.
func Artemis(t testing.TB) Broker {
	t.Helper()
	b := Start(t)
	b.artemisOnly(t)
	return b
}

// TLS returns the URL of the instance's amqps acceptor and the PEM file of the CA that signed
// its certificate (made by the test script).
func (b Broker) TLS(t testing.TB) (url, caFile string) {
	t.Helper()
	b.artemisOnly(t)
	caFile = filepath.Join(ArtemisDir(), "main", "tls", "ca.pem")
	if _, err := os.Stat(caFile); err != nil {
		t.Fatalf("the test broker's CA: %v", err)
	}
	return "amqps://shadow:shadow@127.0.0.1:5674", caFile
}

// CreateQueue creates a durable anycast queue (and its address) with Artemis' own CLI, for
// addresses where auto-creation is off (prefix "nocreate.").
func (b Broker) CreateQueue(t testing.TB, name string) {
	t.Helper()
	b.artemisOnly(t)
	cli := filepath.Join(ArtemisDir(), "apache-artemis-2.40.0", "bin", "artemis")
	out, err := exec.Command(cli, "queue", "create", "--name", name, "--address", name, "--anycast", "--durable",
		"--auto-create-address", "--preserve-on-no-consumers", "--user", "shadow", "--password", "shadow",
		"--url", "tcp://"+b.HostPort(), "--silent").CombinedOutput()
	if err != nil {
		t.Fatalf("artemis queue create %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { b.destroy(t, name) })
}

// Unique returns name with a random suffix (a fresh address for one test).
func Unique(name string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return name + "-" + hex.EncodeToString(r[:])
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// JMSTarget starts the JMS target system of the tests (deployments/artemis/jms-target, Artemis'
// own JMS client, built by test-broker.sh start) on b's requests and confirmations queues, for n
// requests (0: until none came for 5 s), with its extra args ("drift"). It prints a JSON line
// per request, then one with the accounts it holds, on stdout; it is killed at the end of the
// test if it still runs.
func JMSTarget(t testing.TB, b Broker, requests, confirmations string, n int, args ...string) (cmd *exec.Cmd, stdout, stderr *bytes.Buffer) {
	t.Helper()
	dir := filepath.Join(moduleRoot(t), "deployments", "artemis", "jms-target", "target")
	if _, err := os.Stat(filepath.Join(dir, "classes", "shadowbridge", "JmsTarget.class")); err != nil {
		t.Fatalf("the JMS fixture is not built (deployments/artemis/test-broker.sh start builds it): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd = exec.CommandContext(ctx, "java", append([]string{"-cp", filepath.Join(dir, "classes") + string(os.PathListSeparator) + filepath.Join(dir, "lib", "*"),
		"shadowbridge.JmsTarget", "tcp://" + b.HostPort(), "shadow", "shadow", requests, confirmations, fmt.Sprint(n)}, args...)...)
	stdout, stderr = &bytes.Buffer{}, &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, stderr
}

// script runs deployments/artemis/test-broker.sh ACTION NAME.
func script(t testing.TB, action, name string) {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(moduleRoot(t), "deployments", "artemis", "test-broker.sh"), action, name).CombinedOutput()
	if err != nil {
		t.Fatalf("test-broker.sh %s %s: %v\n%s", action, name, err, out)
	}
}

// Instance is one of the test script's own Artemis instances, which a test may kill and restart.
type Instance struct {
	Broker
	name string
}

// Kill kill -9s the instance's JVM.
func (i Instance) Kill(t testing.TB) { t.Helper(); script(t, "kill", i.name) }

// Start starts the instance (again) and waits until it is active (a backup: until it waits for
// its primary).
func (i Instance) Start(t testing.TB) { t.Helper(); script(t, "start", i.name) }

var instancePorts = map[string]string{"crash": "5675", "primary": "5676", "backup": "5677"}

func instance(name string) Instance {
	return Instance{Broker: Broker{Name: "artemis", URL: "amqp://shadow:shadow@127.0.0.1:" + instancePorts[name], Admin: "none"}, name: name}
}

// CrashInstance starts (if needed) the Artemis instance that crash tests kill, on its own port so
// that other tests' broker stays up. Needs the default broker to be the test script's Artemis.
func CrashInstance(t testing.TB) Instance {
	t.Helper()
	Start(t).artemisOnly(t)
	i := instance("crash")
	i.Start(t)
	return i
}

// HAPair starts a fresh shared-store primary/backup pair: the primary active, the backup
// waiting for the journal's lock.
func HAPair(t testing.TB) (primary, backup Instance) {
	t.Helper()
	Start(t).artemisOnly(t)
	primary, backup = instance("primary"), instance("backup")
	script(t, "stop", "backup")
	script(t, "stop", "primary")
	primary.Start(t)
	backup.Start(t)
	return primary, backup
}
