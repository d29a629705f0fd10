package service

import (
	"context"
	"errors"
	"fmt"

	"shadowbridge/domain"
)

// ConfirmRequest is the target system's answer to an operation.
type ConfirmRequest struct {
	Resource           string
	OperationID        string
	Result             domain.ResultStatus
	Message            string
	PrimaryIdentifiers domain.Attributes
	ErrorCategory      domain.Category
	Attributes         domain.Attributes
}

// Confirm records the target system's answer. A confirmation of an already completed operation
// returns an error matching domain.ErrOperationFinished, which confirmation receivers treat as
// "already done".
func (s *Service) Confirm(ctx context.Context, c ConfirmRequest) (_ Reply, err error) {
	defer func() {
		outcome := "ok"
		switch {
		case errors.Is(err, domain.ErrOperationFinished):
			outcome = "already-done"
		case err != nil:
			outcome = string(CategoryOf(err))
		}
		resource := c.Resource
		if _, lerr := s.catalog.Lookup(resource); lerr != nil {
			resource = "unknown" // a made-up name adds no series
		}
		s.metrics.Confirmations.Inc(resource, outcome)
	}()
	res, err := s.lookup(ctx, c.Resource)
	if err != nil {
		return Reply{}, fmt.Errorf("confirm: %w", err)
	}
	if !c.Result.Final() {
		return Reply{}, fmt.Errorf("confirm: %w: %q (want success, warning, partial_error, fatal_error, handled_error or not_applicable)", domain.ErrInvalidResult, c.Result)
	}
	r, shadowID, ok, err := s.store.LookupOperation(ctx, c.OperationID)
	if err != nil {
		return Reply{}, err
	}
	if !ok || r != c.Resource {
		return Reply{}, fmt.Errorf("confirm: %w: %q on resource %q", domain.ErrOperationNotFound, c.OperationID, c.Resource)
	}
	now := s.now()
	discovered := NewID()
	out, err := s.Update(ctx, c.Resource, shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Confirm{Resource: res, OperationID: c.OperationID, Result: c.Result,
			Message: c.Message, PrimaryIdentifiers: c.PrimaryIdentifiers, ErrorCategory: c.ErrorCategory,
			Attributes: c.Attributes, DiscoveredShadowID: discovered}, now)
	})
	if err != nil {
		return Reply{}, err
	}
	for _, e := range out.Events {
		if d, ok := e.(domain.AccountDiscovered); ok {
			// The dead shadow released the identifiers; the account's own shadow takes them.
			_, err := s.Update(ctx, c.Resource, d.ShadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
				return domain.Decide(st, domain.Discover{Resource: res, ShadowID: d.ShadowID, ObjectClass: out.Shadow.ObjectClass(),
					Attributes: d.Attributes, PrimaryIdentifiers: d.PrimaryIdentifiers, Cause: d.OperationID}, now)
			})
			if err != nil {
				s.log.Error("discovered account not recorded", "operation", c.OperationID, "err", err)
			}
		}
	}
	return replyFor(out.Shadow, c.OperationID), nil
}

// Cancel ends an operation that has not reached the target (postponed for retry, or queued).
func (s *Service) Cancel(ctx context.Context, resource, operationID string) (Reply, error) {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return Reply{}, fmt.Errorf("cancel: %w", err)
	}
	r, shadowID, ok, err := s.store.LookupOperation(ctx, operationID)
	if err != nil {
		return Reply{}, err
	}
	if !ok || r != resource {
		return Reply{}, fmt.Errorf("cancel: %w: %q on resource %q", domain.ErrOperationNotFound, operationID, resource)
	}
	now := s.now()
	out, err := s.Update(ctx, resource, shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, domain.Cancel{Resource: res, OperationID: operationID}, now)
	})
	if err != nil {
		return Reply{}, err
	}
	return replyFor(out.Shadow, operationID), nil
}
