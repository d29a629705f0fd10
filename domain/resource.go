package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Consistency holds midPoint's consistency settings for one resource, with midPoint's names.
// DefaultConsistency returns midPoint's defaults.
type Consistency struct {
	// OperationRetryPeriod is how long to wait after a failed attempt before retrying (30m).
	OperationRetryPeriod time.Duration
	// OperationRetryMaxAttempts counts every attempt, the first one included (3); 0 disables retries.
	OperationRetryMaxAttempts int
	// PendingOperationGracePeriod keeps a completed operation effective (0: none).
	PendingOperationGracePeriod time.Duration
	// PendingOperationRetentionPeriod keeps a completed operation visible in the shadow (24h).
	PendingOperationRetentionPeriod time.Duration
	// DeadShadowRetentionPeriod keeps a dead shadow before it is deleted (168h).
	DeadShadowRetentionPeriod time.Duration
	// RefreshOnRead refreshes a shadow whenever it is read (false).
	RefreshOnRead bool
	// AvoidDuplicateOperations refuses to queue an operation equal to one still pending (false).
	AvoidDuplicateOperations bool
	// RetryOnRecovery retries postponed operations as soon as the resource is up again, instead
	// of waiting out operationRetryPeriod (true; beyond midPoint). Attempts are still counted.
	RetryOnRecovery bool
}

// DefaultConsistency returns midPoint's defaults.
func DefaultConsistency() Consistency {
	return Consistency{
		OperationRetryPeriod:            30 * time.Minute,
		OperationRetryMaxAttempts:       3,
		PendingOperationRetentionPeriod: 24 * time.Hour,
		DeadShadowRetentionPeriod:       7 * 24 * time.Hour,
		RetryOnRecovery:                 true,
	}
}

// Validate reports every problem at once.
func (c Consistency) Validate() error {
	var errs []error
	if c.OperationRetryPeriod < 0 {
		errs = append(errs, errors.New("operationRetryPeriod must not be negative"))
	}
	if c.OperationRetryMaxAttempts < 0 {
		errs = append(errs, errors.New("operationRetryMaxAttempts must not be negative"))
	}
	if c.PendingOperationGracePeriod < 0 {
		errs = append(errs, errors.New("pendingOperationGracePeriod must not be negative"))
	}
	if c.PendingOperationRetentionPeriod < 0 {
		errs = append(errs, errors.New("pendingOperationRetentionPeriod must not be negative"))
	}
	if c.DeadShadowRetentionPeriod < 0 {
		errs = append(errs, errors.New("deadShadowRetentionPeriod must not be negative"))
	}
	return errors.Join(errs...)
}

// ObjectClass describes one object class of a resource: its naming attribute (secondary
// identifier, unique among live shadows of the resource) and the primary identifier the target
// system assigns.
type ObjectClass struct {
	Name                string
	SecondaryIdentifier string
	PrimaryIdentifier   string
}

// Resource is a validated resource definition. It is an immutable value; share it freely.
type Resource struct {
	name          string
	classes       map[string]ObjectClass
	consistency   Consistency
	confirmations bool
	maintenance   bool
}

// ValidToken reports whether s may be used as a resource name (a NATS subject token):
// [A-Za-z0-9_-]+. It runs on every append, hence no regexp.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NewResource validates and returns a resource definition. confirmations is midPoint's
// operationExecutionConfirmation: when true an operation delivered to the target stays executing
// until the target system confirms it.
func NewResource(name string, classes []ObjectClass, c Consistency, confirmations bool) (Resource, error) {
	var errs []error
	if !ValidToken(name) {
		errs = append(errs, fmt.Errorf("resource name %q must match [A-Za-z0-9_-]+", name))
	}
	if len(classes) == 0 {
		errs = append(errs, fmt.Errorf("resource %q: at least one object class is required", name))
	}
	m := make(map[string]ObjectClass, len(classes))
	for i, oc := range classes {
		switch {
		case oc.Name == "":
			errs = append(errs, fmt.Errorf("resource %q: objectClasses[%d]: name is required", name, i))
		case m[oc.Name].Name != "":
			errs = append(errs, fmt.Errorf("resource %q: object class %q defined twice", name, oc.Name))
		}
		if oc.SecondaryIdentifier == "" {
			errs = append(errs, fmt.Errorf("resource %q: object class %q: secondaryIdentifier is required", name, oc.Name))
		}
		if oc.PrimaryIdentifier != "" && oc.PrimaryIdentifier == oc.SecondaryIdentifier {
			errs = append(errs, fmt.Errorf("resource %q: object class %q: primary and secondary identifier must differ", name, oc.Name))
		}
		m[oc.Name] = oc
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("resource %q: consistency: %w", name, err))
	}
	if len(errs) > 0 {
		return Resource{}, fmt.Errorf("%w: %w", ErrInvalidResource, errors.Join(errs...))
	}
	return Resource{name: name, classes: m, consistency: c, confirmations: confirmations}, nil
}

// Name returns the resource name.
func (r Resource) Name() string { return r.name }

// ObjectClass returns the named object class.
func (r Resource) ObjectClass(name string) (ObjectClass, bool) {
	oc, ok := r.classes[name]
	return oc, ok
}

// Consistency returns the consistency settings.
func (r Resource) Consistency() Consistency { return r.consistency }

// Confirmations reports whether operations wait for the target system's confirmation.
func (r Resource) Confirmations() bool { return r.confirmations }

// InMaintenance reports whether the resource is administratively in maintenance (midPoint's
// administrativeAvailabilityStatus maintenance): Decide then releases nothing to the target and
// counts no attempts; operations wait, requested, until maintenance ends.
func (r Resource) InMaintenance() bool { return r.maintenance }

// WithMaintenance returns the resource with its administrative state (the configuration is
// static; the state comes from the resource's events).
func (r Resource) WithMaintenance(on bool) Resource {
	r.maintenance = on
	return r
}

// Catalog is the set of configured resources, keyed by name.
type Catalog map[string]Resource

// Lookup returns the resource or ErrUnknownResource.
func (c Catalog) Lookup(name string) (Resource, error) {
	r, ok := c[name]
	if !ok {
		return Resource{}, fmt.Errorf("%w: %q is not configured", ErrUnknownResource, name)
	}
	return r, nil
}

// lookupClass returns the named object class, or an error that names what is known: a command
// without objectClass gets ErrMissingObjectClass, a wrong one ErrUnknownObjectClass.
func (r Resource) lookupClass(op, name string) (ObjectClass, error) {
	if oc, ok := r.classes[name]; ok {
		return oc, nil
	}
	var known []string
	for _, oc := range r.ObjectClasses() {
		known = append(known, oc.Name)
	}
	if name == "" {
		return ObjectClass{}, fmt.Errorf("%s: %w (known: %s)", op, ErrMissingObjectClass, strings.Join(known, ", "))
	}
	return ObjectClass{}, fmt.Errorf("%s: %w: %q on resource %q (known: %s)", op, ErrUnknownObjectClass, name, r.name, strings.Join(known, ", "))
}

// ObjectClasses returns the object classes sorted by name.
func (r Resource) ObjectClasses() []ObjectClass {
	out := make([]ObjectClass, 0, len(r.classes))
	for _, oc := range r.classes {
		out = append(out, oc)
	}
	slices.SortFunc(out, func(a, b ObjectClass) int { return strings.Compare(a.Name, b.Name) })
	return out
}
