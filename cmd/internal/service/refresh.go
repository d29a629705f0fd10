package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"shadowbridge/domain"
)

// TimerFired refreshes a shadow whose timer fired (domain.Refresh's TimerFired: the timer is
// re-armed if work is still due later and the decision did not set it). It reports whether the
// shadow changed.
func (s *Service) TimerFired(ctx context.Context, resource, shadowID string) (bool, error) {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return false, fmt.Errorf("refresh: %w", err)
	}
	return s.refreshOne(ctx, shadowID, domain.Refresh{Resource: res, TimerFired: true}, s.now())
}

// refreshOne decides cmd on one shadow and reports whether it changed.
func (s *Service) refreshOne(ctx context.Context, shadowID string, cmd domain.Refresh, now time.Time) (bool, error) {
	out, err := s.Update(ctx, cmd.Resource.Name(), shadowID, "", func(st domain.Shadow) ([]domain.Event, error) {
		return domain.Decide(st, cmd, now)
	})
	return len(out.Events) > 0, err
}

// Refresh refreshes one shadow, or every shadow of the resource with unfinished operations when
// shadowID is empty, and returns how many shadows changed.
func (s *Service) Refresh(ctx context.Context, resource, shadowID string, force bool) (int, error) {
	res, err := s.lookup(ctx, resource)
	if err != nil {
		return 0, fmt.Errorf("refresh: %w", err)
	}
	ids := []string{shadowID}
	if shadowID == "" {
		if s.pending == nil {
			return 0, errors.New("refresh: no pending index configured")
		}
		list, err := s.pending.Pending(ctx, resource)
		if err != nil {
			return 0, err
		}
		ids = ids[:0]
		for _, d := range list {
			ids = append(ids, d.ShadowID)
		}
	}
	now := s.now()
	one := func(id string) (bool, error) {
		changed, err := s.refreshOne(ctx, id, domain.Refresh{Resource: res, ForceRetry: force}, now)
		if shadowID == "" && errors.Is(err, domain.CategoryNotFound) {
			return false, nil
		}
		return changed, err
	}
	if len(ids) == 1 {
		changed, err := one(ids[0])
		if changed {
			return 1, err
		}
		return 0, err
	}
	// Many shadows (a sweep, a recovery, the end of maintenance): in parallel, bounded. Each
	// shadow is its own aggregate, so order among them does not matter.
	var (
		n    atomic.Int64
		errs = make(chan error, 1)
		sem  = make(chan struct{}, refreshParallel)
		wg   sync.WaitGroup
	)
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			changed, err := one(id)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			if changed {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return int(n.Load()), err
	default:
	}
	return int(n.Load()), ctx.Err()
}

// refreshParallel bounds the shadows one resource-wide refresh decides at once.
const refreshParallel = 16
