// Package api is shadowbridge's JSON contract on the wire (docs/contract.md): the bodies of the
// commands and queries, their strict decoding (Decode), and how each body becomes the typed input
// of a use case in package service. The NATS adapter (package natsapi), the AMQP receivers (wired
// in package app) and the CLI all use these types, so a body is written and read one way.
package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
)

// Fingerprint returns a stable digest of a decoded request body (what a request id's reuse is
// checked against: the same id with another body is refused).
func Fingerprint(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:16])
}

// Request is the add this body asks for on resource.
func (b AddBody) Request(resource string) (service.Request, error) {
	attrs, err := AttributesFrom(b.Attributes.Values)
	if err != nil {
		return service.Request{}, fmt.Errorf("add: %w", err)
	}
	return service.Request{Verb: "add", Resource: resource, RequestID: b.RequestID, Fingerprint: Fingerprint(b),
		ObjectClass: b.ObjectClass, Attributes: attrs, Order: slices.Clone(b.Attributes.Order), Assigned: b.Assigned}, nil
}

// Request is the modify this body asks for on resource.
func (b ModifyBody) Request(resource string) (service.Request, error) {
	id, ids, err := target("modify", b.ShadowID, b.Identifiers)
	if err != nil {
		return service.Request{}, err
	}
	changes, err := ChangesFrom(b.Changes.Values)
	if err != nil {
		return service.Request{}, fmt.Errorf("modify: %w", err)
	}
	return service.Request{Verb: "modify", Resource: resource, ShadowID: id, Identifiers: ids, ObjectClass: b.ObjectClass,
		RequestID: b.RequestID, Fingerprint: Fingerprint(b), Changes: changes, Order: slices.Clone(b.Changes.Order)}, nil
}

// Request is the delete this body asks for on resource.
func (b DeleteBody) Request(resource string) (service.Request, error) {
	id, ids, err := target("delete", b.ShadowID, b.Identifiers)
	if err != nil {
		return service.Request{}, err
	}
	return service.Request{Verb: "delete", Resource: resource, ShadowID: id, Identifiers: ids, ObjectClass: b.ObjectClass,
		RequestID: b.RequestID, Fingerprint: Fingerprint(b)}, nil
}

// target checks how a modify or delete names its shadow: by id, or by identifiers (resolved by
// service.Provision once the request id has been looked at).
func target(verb, shadowID string, ids map[string][]any) (string, domain.Attributes, error) {
	switch {
	case shadowID != "" && len(ids) > 0:
		return "", nil, fmt.Errorf("%s: %w: give shadowId or identifiers, not both", verb, ErrBadRequest)
	case shadowID != "":
		if !domain.ValidID(shadowID) {
			return "", nil, fmt.Errorf("%s: %w: shadowId %q is not a UUID", verb, domain.ErrInvalidID, shadowID)
		}
		return shadowID, nil, nil
	case len(ids) > 0:
		attrs, err := AttributesFrom(ids)
		if err != nil {
			return "", nil, fmt.Errorf("%s: identifiers: %w", verb, err)
		}
		if len(attrs) != 1 {
			return "", nil, fmt.Errorf("%s: %w: identifiers must name exactly one attribute", verb, domain.ErrInvalidCommand)
		}
		return "", attrs, nil
	}
	return "", nil, fmt.Errorf("%s: %w: shadowId or identifiers is required", verb, ErrBadRequest)
}

// Request is the confirmation this body carries for resource (the NATS confirm command; an AMQP
// confirmation, whose operation id is its correlation-id, is read into this body first).
func (b ConfirmBody) Request(resource string) (service.ConfirmRequest, error) {
	if b.OperationID == "" {
		return service.ConfirmRequest{}, fmt.Errorf("confirm: %w: operationId is required", ErrBadRequest)
	}
	ids, err := AttributesFrom(b.PrimaryIdentifiers)
	if err != nil {
		return service.ConfirmRequest{}, fmt.Errorf("confirm: primaryIdentifiers: %w", err)
	}
	attrs, err := AttributesFrom(b.Attributes)
	if err != nil {
		return service.ConfirmRequest{}, fmt.Errorf("confirm: attributes: %w", err)
	}
	return service.ConfirmRequest{Resource: resource, OperationID: b.OperationID,
		Result: domain.ResultStatus(b.ResultStatus), Message: b.Message, PrimaryIdentifiers: ids,
		ErrorCategory: domain.Category(b.ErrorCategory), Attributes: attrs}, nil
}

// Confirmation reads the body of a confirmation that arrived on a resource's confirmation address
// (AMQP), whose correlation-id names the operation: the confirm command's body, decoded as
// strictly (Decode), without operationId or with the same one, and with a resultStatus.
func Confirmation(resource, operationID string, body []byte) (service.ConfirmRequest, error) {
	b, err := Decode[ConfirmBody](body)
	if err != nil {
		return service.ConfirmRequest{}, err
	}
	switch {
	case b.OperationID != "" && b.OperationID != operationID:
		return service.ConfirmRequest{}, fmt.Errorf("confirm: %w: the body names operation %s, the correlation-id %s", ErrBadRequest, b.OperationID, operationID)
	case b.ResultStatus == "":
		return service.ConfirmRequest{}, fmt.Errorf("confirm: %w: resultStatus is required", ErrBadRequest)
	}
	b.OperationID = operationID
	return b.Request(resource)
}

// Notification is the change this body reports on resource (the NATS notify command and the
// resource's AMQP notification address).
func (b NotifyBody) Notification(resource string) (service.Notification, error) {
	ids, err := AttributesFrom(b.PrimaryIdentifiers)
	if err != nil {
		return service.Notification{}, fmt.Errorf("notify: primaryIdentifiers: %w", err)
	}
	attrs, err := AttributesFrom(b.Attributes)
	if err != nil {
		return service.Notification{}, fmt.Errorf("notify: attributes: %w", err)
	}
	var at time.Time
	if b.ObservedAt != "" {
		if at, err = time.Parse(time.RFC3339Nano, b.ObservedAt); err != nil {
			return service.Notification{}, fmt.Errorf("notify: %w: observedAt %q is not an RFC 3339 time", ErrBadRequest, b.ObservedAt)
		}
	}
	return service.Notification{Resource: resource, RequestID: b.RequestID, Fingerprint: Fingerprint(b),
		Change: domain.ChangeType(b.Change), ObjectClass: b.ObjectClass, PrimaryIdentifiers: ids, Attributes: attrs, ObservedAt: at}, nil
}

// ListingPage is the page of a listing this body carries for resource (the NATS page command and pages
// on the confirmation address).
func (b PageBody) ListingPage(resource string) (service.Page, error) {
	if !domain.ValidID(b.ReconciliationID) || b.Page < 1 {
		return service.Page{}, fmt.Errorf("page: %w: reconciliationId (a UUID) and page (from 1) are required", ErrBadRequest)
	}
	p := service.Page{Resource: resource, ReconciliationID: b.ReconciliationID, Number: b.Page, Last: b.Last}
	for i, a := range b.Accounts {
		ids, err := AttributesFrom(a.PrimaryIdentifiers)
		if err != nil {
			return service.Page{}, fmt.Errorf("page: account %d: primaryIdentifiers: %w", i, err)
		}
		attrs, err := AttributesFrom(a.Attributes)
		if err != nil {
			return service.Page{}, fmt.Errorf("page: account %d: attributes: %w", i, err)
		}
		p.Accounts = append(p.Accounts, service.ListedAccount{PrimaryIdentifiers: ids, Attributes: attrs, AppliedSequence: a.AppliedSequence})
	}
	return p, nil
}

// ShadowQuery's time, parsed (zero: now).
func (q ShadowQuery) Time() (time.Time, error) {
	if q.AsOf == "" {
		return time.Time{}, nil
	}
	at, err := time.Parse(time.RFC3339Nano, q.AsOf)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: asOf %q is not an RFC 3339 time", ErrBadRequest, q.AsOf)
	}
	return at, nil
}
