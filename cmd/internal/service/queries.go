package service

import (
	"context"
	"fmt"
	"time"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// Explain says why the shadow is in its lifecycle state and what happens next (projections.Queries).
func (s *Service) Explain(ctx context.Context, shadowID string) (domain.Explanation, error) {
	return s.queries.Explain(ctx, shadowID, func(resource string) domain.Consistency {
		if res, err := s.catalog.Lookup(resource); err == nil {
			return res.Consistency()
		}
		return domain.DefaultConsistency()
	})
}

// Shadow returns the shadow now (refreshed first with refreshOnRead), or as it was at asOf when
// asOf is not zero (projections.Queries).
func (s *Service) Shadow(ctx context.Context, shadowID string, asOf time.Time) (domain.ShadowData, error) {
	if !asOf.IsZero() {
		return s.queries.AsOf(ctx, shadowID, asOf)
	}
	if !domain.ValidID(shadowID) {
		return domain.ShadowData{}, fmt.Errorf("shadow: %w: shadowId %q is not a UUID", domain.ErrInvalidID, shadowID)
	}
	st, _, err := s.store.LoadByID(ctx, shadowID)
	if err != nil {
		return domain.ShadowData{}, err
	}
	if !st.Created() {
		return domain.ShadowData{}, fmt.Errorf("get: %w: %s", domain.ErrShadowNotFound, shadowID)
	}
	if res, err := s.lookup(ctx, st.Resource()); err == nil && res.Consistency().RefreshOnRead {
		// refreshOnRead: retry what is due before answering, as midPoint does on get.
		out, err := s.Update(ctx, st.Resource(), shadowID, "", func(cur domain.Shadow) ([]domain.Event, error) {
			return domain.Decide(cur, domain.Refresh{Resource: res}, s.now())
		})
		if err != nil {
			return domain.ShadowData{}, err
		}
		st = out.Shadow
	}
	return st.Data(), nil
}

// HistoryEvent is one event as history and audit show it.
type HistoryEvent = projections.HistoryEvent

// HistoryOf turns one record into history events (projections.HistoryOf).
func HistoryOf(rec *eventstore.Record) ([]HistoryEvent, error) { return projections.HistoryOf(rec) }

// History returns a shadow's events in order.
func (s *Service) History(ctx context.Context, shadowID string) ([]HistoryEvent, error) {
	return s.queries.History(ctx, shadowID)
}

// PendingPage returns a page of at most limit shadows with unfinished operations, of one resource
// or of all (""), after the cursor after (the previous page's Next). Errors: the resource is not
// configured (not-found), the pending index is not available (communication).
func (s *Service) PendingPage(ctx context.Context, resource, after string, limit int) (projections.PendingPage, error) {
	if resource != "" {
		if _, err := s.catalog.Lookup(resource); err != nil {
			return projections.PendingPage{}, err
		}
	}
	if s.pending == nil {
		return projections.PendingPage{}, fmt.Errorf("%w: pending index not available", eventstore.ErrUnavailable)
	}
	return s.pending.PendingPage(ctx, resource, after, limit)
}
