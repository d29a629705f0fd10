package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// headerTimerCommit names, on a shadow's schedule, the stream sequence of the commit whose
// decision armed it. A schedule without it (armed by ArmTimer, or by builds before it) counts as
// armed by commit 0, older than any commit.
const headerTimerCommit = "Prov-Timer-Commit"

// ApplyTimers arms or cancels the shadow's timer as a record's timer events say (the timer
// armer's handler), calling count("armed"), count("cancelled") or count("stale") once each is
// done. Each is synchronous: the armer acknowledges a record only once its schedule is stored.
// A record without timer events does nothing; one whose events cannot be decoded is reported
// through count("undecodable") and otherwise skipped (the projector reports it too).
//
// Several instances apply records, and a record a crashed instance had taken comes back to the
// other one after AckWait, possibly after newer records of its shadow. Whatever the order, an
// older decision never replaces or removes the schedule of a newer one: each schedule names the
// commit that armed it, an arming is a publish that expects the schedule it read to be the
// subject's last message, and a cancel deletes exactly the schedule it read. A newer schedule
// written in between makes the publish fail (read again: now it is newer, so the older record
// is skipped) or the delete find nothing (read again, likewise).
func (s *Store) ApplyTimers(ctx context.Context, r *Record, count func(string)) error {
	if !r.Has("TimerSet") && !r.Has("TimerCleared") {
		return nil
	}
	evs, err := r.Events()
	if err != nil {
		count("undecodable")
		s.skipped("timer-armer", r, err)
		return nil
	}
	for _, e := range evs {
		var applied bool
		var what string
		switch x := e.(type) {
		case domain.TimerSet:
			applied, err = s.ArmTimerFor(ctx, r.Resource, r.ShadowID, x.At, r.Seq)
			what = "armed"
		case domain.TimerCleared:
			applied, err = s.CancelTimerFor(ctx, r.Resource, r.ShadowID, r.Seq)
			what = "cancelled"
		default:
			continue
		}
		if err != nil {
			return err
		}
		if !applied {
			what = "stale"
		}
		count(what)
	}
	return nil
}

// schedule is the shadow's pending schedule as read from the stream: its own sequence and the
// commit that armed it.
type schedule struct{ seq, commit uint64 }

// ArmTimerFor schedules the shadow's timer at at on behalf of the commit with stream sequence
// commit, unless the pending schedule was armed by a newer commit (then it returns false and
// changes nothing). Safe to call from several instances at once, in any order: the schedule left
// is the newest commit's.
func (s *Store) ArmTimerFor(ctx context.Context, resource, shadowID string, at time.Time, commit uint64) (bool, error) {
	return s.replaceSchedule(ctx, resource, shadowID, commit, "arm", func(cur *schedule) (*schedule, error) {
		m := s.timerMsg(resource, shadowID, at)
		m.Header.Set(headerTimerCommit, strconv.FormatUint(commit, 10))
		var expected uint64
		if cur != nil {
			expected = cur.seq
		}
		ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(expected))
		if isWrongLastSeq(err) {
			return nil, nil
		}
		if err != nil {
			return nil, unavailable(err)
		}
		return &schedule{seq: ack.Sequence, commit: commit}, nil
	})
}

// CancelTimerFor removes the shadow's pending schedule on behalf of the commit with stream
// sequence commit, unless it was armed by a newer commit (then it returns false). Removing a
// schedule that is not there counts as done.
func (s *Store) CancelTimerFor(ctx context.Context, resource, shadowID string, commit uint64) (bool, error) {
	return s.replaceSchedule(ctx, resource, shadowID, commit, "cancel", func(cur *schedule) (*schedule, error) {
		if cur == nil {
			return &schedule{}, nil
		}
		// Deleting by sequence removes exactly the schedule read: one written meanwhile (newer
		// or not) has another sequence and is looked at again.
		done, err := s.deleteSeq(ctx, cur.seq)
		if !done || err != nil {
			return nil, err
		}
		return &schedule{}, nil
	})
}

// replaceSchedule is the compare-and-write loop of ArmTimerFor and CancelTimerFor: take the
// shadow's schedule; leave it to a newer commit's (false); otherwise write, where write returns
// the schedule it left (none: seq 0), or nil when the schedule changed since it was taken (then
// read again, from the leader).
//
// The first attempt takes the schedule this process last wrote or read for the shadow (see
// scheduleCache), or none, instead of reading it: the usual arming (a new shadow's first timer,
// or one armed by the instance that armed the previous one) then costs one write. A wrong guess is safe, as every write is checked
// by the server against the schedule it assumed (an arming expects it to be the subject's last
// message, a cancel deletes it by sequence), and costs a failed write and a read. Only a cancel
// that would do nothing on the guess (no schedule known) reads first, since nothing checks it.
func (s *Store) replaceSchedule(ctx context.Context, resource, shadowID string, commit uint64, op string, write func(cur *schedule) (*schedule, error)) (bool, error) {
	subject := s.TimerSubject(resource, shadowID)
	for attempt := 0; attempt < 16; attempt++ {
		cur, _ := s.schedules.get(subject) // nothing known: guess none
		if attempt > 0 || (op == "cancel" && cur == nil) {
			var err error
			if cur, err = s.currentSchedule(ctx, subject, attempt > 0); err != nil {
				return false, err
			}
			s.schedules.put(subject, cur)
		}
		if cur != nil && cur.commit > commit {
			return false, nil
		}
		if s.timerRace != nil {
			s.timerRace(op)
		}
		left, err := write(cur)
		if err != nil {
			s.schedules.forget(subject)
			return false, fmt.Errorf("eventstore: %s timer %s: %w", op, shadowID, err)
		}
		if left != nil {
			if left.seq == 0 {
				left = nil
			}
			s.schedules.put(subject, left)
			return true, nil
		}
	}
	s.schedules.forget(subject)
	return false, fmt.Errorf("eventstore: %s timer %s: %w: the schedule kept changing", op, shadowID, ErrUnavailable)
}

// scheduleCache remembers, for recently armed shadows, the schedule this process last wrote or
// read (nil: none), in two generations of at most scheduleCacheSize entries each. Safe for
// concurrent use; its entries are guesses (another instance or a firing may have changed the
// schedule since), which replaceSchedule only uses where the server checks them.
type scheduleCache struct {
	mu        sync.Mutex
	cur, prev map[string]*schedule
}

const scheduleCacheSize = 1 << 16

func (c *scheduleCache) get(subject string) (*schedule, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.cur[subject]; ok {
		return v, true
	}
	v, ok := c.prev[subject]
	return v, ok
}

func (c *scheduleCache) put(subject string, v *schedule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil || len(c.cur) >= scheduleCacheSize {
		c.prev, c.cur = c.cur, make(map[string]*schedule, 1024)
	}
	c.cur[subject] = v
}

func (c *scheduleCache) forget(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, subject)
	delete(c.prev, subject)
}

// deleteSeq removes the message with stream sequence seq, reporting false when there is none
// (it fired or was replaced after it was read). The JetStream API is asked directly: nats.go's
// DeleteMsg reports the server's error code only as text.
func (s *Store) deleteSeq(ctx context.Context, seq uint64) (bool, error) {
	req, _ := json.Marshal(map[string]any{"seq": seq, "no_erase": true})
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.DELETE."+s.cfg.Stream, req)
	if err != nil {
		return false, unavailable(err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return false, fmt.Errorf("%w: delete answer: %w", ErrUnavailable, err)
	}
	switch {
	case resp.Success:
		return true, nil
	case resp.Error != nil && (resp.Error.ErrCode == errCodeSequenceNotFound || resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound)):
		return false, nil
	case resp.Error != nil:
		return false, fmt.Errorf("%w: %s (%d)", ErrUnavailable, resp.Error.Description, resp.Error.ErrCode)
	}
	return false, fmt.Errorf("%w: delete of %d not confirmed", ErrUnavailable, seq)
}

// errCodeSequenceNotFound is JetStream's answer to deleting a sequence the stream does not hold.
const errCodeSequenceNotFound = 10043

// currentSchedule reads the shadow's pending schedule (nil if none). fresh reads it from the
// stream's leader on a replicated stream, where a direct get may be answered a moment behind.
func (s *Store) currentSchedule(ctx context.Context, subject string, fresh bool) (*schedule, error) {
	var seq uint64
	var h nats.Header
	if fresh && s.cfg.Replicas > 1 {
		r, hdr, err := s.leaderLastWithHeader(ctx, s.cfg.Stream, subject)
		if err != nil || r == nil {
			return nil, err
		}
		seq, h = r.Seq, hdr
	} else {
		m, err := s.stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			if s.cfg.Replicas > 1 {
				return s.currentSchedule(ctx, subject, true)
			}
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("eventstore: timer %s: %w", subject, unavailable(err))
		}
		seq, h = m.Sequence, m.Header
	}
	commit, _ := strconv.ParseUint(h.Get(headerTimerCommit), 10, 64)
	return &schedule{seq: seq, commit: commit}, nil
}

// EnsureRepeatingTimer arms a repeating schedule named name for a resource
// (<prefix>.timer.<resource>.<name>, firing on <prefix>.due.<resource>.<name> every interval),
// unless the same one is armed already: every instance may call it at start-up, and a restart
// does not push the next firing back. interval 0 cancels it.
func (s *Store) EnsureRepeatingTimer(ctx context.Context, resource, name string, every time.Duration) error {
	subject := s.TimerSubject(resource, name)
	pattern := "@every " + every.String()
	m, err := s.stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("eventstore: timer %s: %w", subject, unavailable(err))
	case every > 0 && m.Header.Get(headerSchedule) == pattern:
		return nil
	}
	if every <= 0 {
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("eventstore: cancel timer %s: %w", subject, unavailable(err))
		}
		return nil
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set(headerSchedule, pattern)
	msg.Header.Set(headerScheduleTarget, s.DueSubject(resource, name))
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("eventstore: arm timer %s: %w", subject, unavailable(err))
	}
	return nil
}
