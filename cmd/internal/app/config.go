package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"shadowbridge/bridge"
	"shadowbridge/domain"
)

// Config is the YAML configuration (CONTRACT.md, "Configuration").
type Config struct {
	NATS      NATSConfig       `yaml:"nats"`
	HTTP      HTTPConfig       `yaml:"http"`
	Prefix    string           `yaml:"prefix"`
	Resources []ResourceConfig `yaml:"resources"`
}

// NATSConfig is how to reach NATS.
type NATSConfig struct {
	URL      string `yaml:"url"`
	Creds    string `yaml:"creds"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// PasswordFile, instead of password, names a file holding it (see Config.LoadSecrets).
	PasswordFile string    `yaml:"passwordFile"`
	TLS          TLSConfig `yaml:"tls"`
	Embedded     struct {
		StoreDir string `yaml:"storeDir"`
	} `yaml:"embedded"`
	// Replicas of the streams and buckets (1 for a single server, 3 for a cluster).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is JetStream's Nats-Msg-Id window on the event stream (default 2m). Request
	// ids stay idempotent beyond it (the index's request records); it bounds how long a
	// publisher's blind re-send is dropped by the server itself.
	DuplicateWindow Duration `yaml:"duplicateWindow"`
}

// TLSConfig names PEM files.
type TLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HTTPConfig is the dashboard/ops listener. The dashboard and its JSON and SSE endpoints show
// account attributes: on an address other than loopback they need a bearer token (Token, or the
// environment variable SHADOWBRIDGE_HTTP_TOKEN) unless Insecure says otherwise. /healthz and
// /readyz are always open; /metrics is open only with OpenMetrics.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"`
	// TokenFile, instead of token, names a file holding it (see Config.LoadSecrets).
	TokenFile   string `yaml:"tokenFile"`
	Insecure    bool   `yaml:"insecure"`
	OpenMetrics bool   `yaml:"openMetrics"`
}

// MinTokenBytes is the shortest bearer token accepted.
const MinTokenBytes = 16

// validate reports what is wrong with the listener's protection.
func (h HTTPConfig) validate() []error {
	var errs []error
	host, port, err := net.SplitHostPort(h.Listen)
	if err != nil {
		return []error{fmt.Errorf("http.listen %q: want host:port", h.Listen)}
	}
	if err := checkPort("http.listen", port); err != nil {
		errs = append(errs, err)
	}
	if h.Token != "" && len(h.Token) < MinTokenBytes {
		errs = append(errs, fmt.Errorf("http.token: at least %d characters", MinTokenBytes))
	}
	if h.Token == "" && !h.Insecure && !loopback(host) {
		errs = append(errs, fmt.Errorf("http.listen %q is not a loopback address and the dashboard shows account data: set http.token (or SHADOWBRIDGE_HTTP_TOKEN), or http.insecure: true", h.Listen))
	}
	return errs
}

// checkPort refuses a port that is not a number from 0 to 65535 (0: any free one).
func checkPort(field, port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s: port %q out of range (0-65535)", field, port)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ObjectClassConfig is one object class.
type ObjectClassConfig struct {
	Name                string `yaml:"name"`
	SecondaryIdentifier string `yaml:"secondaryIdentifier"`
	PrimaryIdentifier   string `yaml:"primaryIdentifier"`
}

// TargetConfig selects exactly one transport.
type TargetConfig struct {
	AMQP    *AMQPConfig       `yaml:"amqp"`
	AMQP091 *AMQP091Config    `yaml:"amqp091"`
	NATS    *NATSTargetConfig `yaml:"nats"`
	Sample  *struct{}         `yaml:"sample"`
}

// AMQPConfig is an AMQP 1.0 broker target (Artemis in production).
type AMQPConfig struct {
	URL string `yaml:"url"`
	// URLs, instead of url, is an ordered failover list: a primary broker and its backups.
	URLs                []string  `yaml:"urls"`
	Address             string    `yaml:"address"`
	Username            string    `yaml:"username"`
	Password            string    `yaml:"password"`
	PasswordFile        string    `yaml:"passwordFile"` // instead of password (see Config.LoadSecrets)
	TLS                 TLSConfig `yaml:"tls"`
	ConfirmationAddress string    `yaml:"confirmationAddress"`
	// NotificationAddress, when set, is where the target sends change notifications of its
	// accounts (the body of prov.cmd.<resource>.notify).
	NotificationAddress string `yaml:"notificationAddress"`
	// MaxBackoff caps the wait between reconnection attempts (default 30s).
	MaxBackoff Duration `yaml:"maxBackoff"`
}

// AMQP091Config is a RabbitMQ target over its native protocol (AMQP 0-9-1).
type AMQP091Config struct {
	URL               string `yaml:"url"`   // amqp://user:password@host:5672/vhost
	Queue             string `yaml:"queue"` // durable, declared if missing
	ConfirmationQueue string `yaml:"confirmationQueue"`
	// MaxBackoff caps the wait between reconnection attempts (default 30s).
	MaxBackoff Duration `yaml:"maxBackoff"`
}

// NATSTargetConfig is a JetStream work-queue target.
type NATSTargetConfig struct {
	Subject string `yaml:"subject"`
}

// ConsistencyConfig uses midPoint's names; zero values mean midPoint's defaults except where a
// pointer lets 0 be said explicitly.
type ConsistencyConfig struct {
	OperationRetryPeriod            *Duration `yaml:"operationRetryPeriod"`
	OperationRetryMaxAttempts       *int      `yaml:"operationRetryMaxAttempts"`
	PendingOperationGracePeriod     *Duration `yaml:"pendingOperationGracePeriod"`
	PendingOperationRetentionPeriod *Duration `yaml:"pendingOperationRetentionPeriod"`
	DeadShadowRetentionPeriod       *Duration `yaml:"deadShadowRetentionPeriod"`
	RefreshOnRead                   bool      `yaml:"refreshOnRead"`
	AvoidDuplicateOperations        bool      `yaml:"avoidDuplicateOperations"`
	RetryOnRecovery                 *bool     `yaml:"retryOnRecovery"`
}

// ResourceConfig is one resource.
type ResourceConfig struct {
	Name                           string              `yaml:"name"`
	ObjectClasses                  []ObjectClassConfig `yaml:"objectClasses"`
	Target                         TargetConfig        `yaml:"target"`
	Transformation                 string              `yaml:"transformation"`
	OperationExecutionConfirmation *bool               `yaml:"operationExecutionConfirmation"`
	Consistency                    ConsistencyConfig   `yaml:"consistency"`
	// Reconcile, when set, reconciles the resource on a schedule (a repeating JetStream message
	// schedule in the log: every instance arms the same one).
	Reconcile *ReconcileConfig `yaml:"reconcile"`
}

// ReconcileConfig is a resource's reconciliation schedule.
type ReconcileConfig struct {
	Every Duration `yaml:"every"` // at least a minute
}

// Duration parses Go durations ("30m", "168h", "0s").
type Duration time.Duration

// UnmarshalYAML accepts a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError: the decoder notes it and goes on, so that every problem is reported.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (e.g. 30m, 24h, 0s)", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MinReconcileEvery is the shortest reconciliation schedule (a variable for tests).
var MinReconcileEvery = time.Minute

// DefaultConfig is the dev configuration: the demo resource served by the sample target system.
func DefaultConfig() Config {
	confirm := true
	return Config{
		NATS:   NATSConfig{URL: "nats://127.0.0.1:4222", Replicas: 1},
		HTTP:   HTTPConfig{Listen: "127.0.0.1:8080"},
		Prefix: "prov",
		Resources: []ResourceConfig{{
			Name:                           "demo",
			ObjectClasses:                  []ObjectClassConfig{{Name: "AccountObjectClass", SecondaryIdentifier: "login", PrimaryIdentifier: "uid"}},
			Target:                         TargetConfig{Sample: &struct{}{}},
			Transformation:                 "simplifiedJson",
			OperationExecutionConfirmation: &confirm,
		}},
	}
}

// Load reads a YAML file over the defaults (resources in the file replace the demo resource).
// Its errors name the file, and every problem Parse finds (see Parse).
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, errors.Unwrap(err)) // Parse's own "config: " left out
	}
	return c, nil
}

// ErrEmptyConfig is a configuration with nothing in it (or only comments).
var ErrEmptyConfig = errors.New("the file is empty: it needs at least one resource under resources: (deployments/shadowbridge.example.yaml shows every key)")

// Parse reads YAML over the defaults. Every unknown key is an error, named with its line and its
// path (resources[1].objectClases) and the closest known key; a value of the wrong kind says what
// it is and what is wanted, in YAML's words; all of them are reported at once.
func Parse(b []byte) (Config, error) {
	c := DefaultConfig()
	c.Resources = nil
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if doc.Kind == 0 || (len(doc.Content) == 1 && doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
		return Config{}, fmt.Errorf("config: %w", ErrEmptyConfig)
	}
	errs := unknownKeys(&doc, reflect.TypeFor[Config](), "")
	if err := doc.Decode(&c); err != nil {
		errs = append(errs, yamlTypeErrors(err)...)
	} else if len(errs) > 0 {
		// Unknown keys aside, what was read is checked too: every problem at once.
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return c, nil
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	if !domain.ValidToken(c.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q must match [A-Za-z0-9_-]+", c.Prefix))
	}
	for u := range strings.SplitSeq(c.NATS.URL, ",") {
		if err := bridge.CheckURL("nats.url", strings.TrimSpace(u), "nats", "tls", "ws", "wss"); err != nil {
			errs = append(errs, err)
		}
	}
	if c.NATS.DuplicateWindow < 0 {
		errs = append(errs, errors.New("nats.duplicateWindow must not be negative"))
	}
	if c.NATS.User != "" && c.NATS.Creds != "" {
		errs = append(errs, errors.New("nats: use creds or user/password, not both"))
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		errs = append(errs, errors.New("nats.tls: cert and key go together"))
	}
	errs = append(errs, c.HTTP.validate()...)
	if len(c.Resources) == 0 {
		errs = append(errs, errors.New("resources: at least one resource is required"))
	}
	seen := map[string]bool{}
	for i, r := range c.Resources {
		at := fmt.Sprintf("resources[%d] (%s)", i, r.Name)
		if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s: defined twice", at))
		}
		seen[r.Name] = true
		if r.Reconcile != nil && time.Duration(r.Reconcile.Every) < MinReconcileEvery {
			errs = append(errs, fmt.Errorf("%s: reconcile.every is %s, at least %s", at, time.Duration(r.Reconcile.Every), MinReconcileEvery))
		}
		if _, err := r.domain(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		n := 0
		if r.Target.AMQP != nil {
			n++
			a := r.Target.AMQP
			switch {
			case (a.URL == "") == (len(a.URLs) == 0):
				errs = append(errs, fmt.Errorf("%s: target.amqp: give url or urls (a failover list), one of them", at))
			case a.URL != "":
				if err := bridge.CheckURL("target.amqp.url", a.URL, "amqp", "amqps"); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", at, err))
				}
			default:
				for j, u := range a.URLs {
					if err := bridge.CheckURL(fmt.Sprintf("target.amqp.urls[%d]", j), u, "amqp", "amqps"); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", at, err))
					}
				}
			}
			if a.Address == "" {
				errs = append(errs, fmt.Errorf("%s: target.amqp: address is required", at))
			}
			if a.MaxBackoff < 0 {
				errs = append(errs, fmt.Errorf("%s: target.amqp: maxBackoff must not be negative", at))
			}
		}
		if a := r.Target.AMQP091; a != nil {
			n++
			if err := bridge.CheckURL("target.amqp091.url", a.URL, "amqp", "amqps"); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", at, err))
			}
			if a.Queue == "" {
				errs = append(errs, fmt.Errorf("%s: target.amqp091: queue is required", at))
			}
			if a.MaxBackoff < 0 {
				errs = append(errs, fmt.Errorf("%s: target.amqp091: maxBackoff must not be negative", at))
			}
		}
		if r.Target.NATS != nil {
			n++
			if r.Target.NATS.Subject == "" {
				errs = append(errs, fmt.Errorf("%s: target.nats: subject is required", at))
			}
		}
		if r.Target.Sample != nil {
			n++
		}
		if n != 1 {
			errs = append(errs, fmt.Errorf("%s: target: exactly one of amqp, amqp091, nats, sample is required (got %d)", at, n))
		}
		if _, err := bridge.Transform(r.Transformation, domain.TargetRequest{}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
	}
	return errors.Join(errs...)
}

func (r ResourceConfig) domain() (domain.Resource, error) {
	cons := domain.DefaultConsistency()
	cc := r.Consistency
	if cc.OperationRetryPeriod != nil {
		cons.OperationRetryPeriod = time.Duration(*cc.OperationRetryPeriod)
	}
	if cc.OperationRetryMaxAttempts != nil {
		cons.OperationRetryMaxAttempts = *cc.OperationRetryMaxAttempts
	}
	if cc.PendingOperationGracePeriod != nil {
		cons.PendingOperationGracePeriod = time.Duration(*cc.PendingOperationGracePeriod)
	}
	if cc.PendingOperationRetentionPeriod != nil {
		cons.PendingOperationRetentionPeriod = time.Duration(*cc.PendingOperationRetentionPeriod)
	}
	if cc.DeadShadowRetentionPeriod != nil {
		cons.DeadShadowRetentionPeriod = time.Duration(*cc.DeadShadowRetentionPeriod)
	}
	cons.RefreshOnRead, cons.AvoidDuplicateOperations = cc.RefreshOnRead, cc.AvoidDuplicateOperations
	if cc.RetryOnRecovery != nil {
		cons.RetryOnRecovery = *cc.RetryOnRecovery
	}
	classes := make([]domain.ObjectClass, len(r.ObjectClasses))
	for i, oc := range r.ObjectClasses {
		classes[i] = domain.ObjectClass{Name: oc.Name, SecondaryIdentifier: oc.SecondaryIdentifier, PrimaryIdentifier: oc.PrimaryIdentifier}
	}
	// The sample target system always confirms, so by default its resources wait for that.
	confirm := r.Target.Sample != nil
	if r.OperationExecutionConfirmation != nil {
		confirm = *r.OperationExecutionConfirmation
	}
	return domain.NewResource(r.Name, classes, cons, confirm)
}

// Catalog returns the validated resources.
func (c Config) Catalog() (domain.Catalog, error) {
	cat := domain.Catalog{}
	for _, r := range c.Resources {
		d, err := r.domain()
		if err != nil {
			return nil, err
		}
		cat[r.Name] = d
	}
	return cat, nil
}
