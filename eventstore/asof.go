package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// asOfWalk bounds how many commits stored after the asked time the fast path reads forward
// before it gives up and scans the shadow's history. A commit is stored a moment after it is
// decided, so normally the first one stored after the asked time is also decided after it; a
// longer walk means the deciding clocks are not the server's (a test clock, a skewed instance).
const asOfWalk = 8

// CommitAsOf returns the shadow's last commit decided at or before t (its first event's time),
// in log order: the commit whose state is the shadow "as of" t. nil when no commit of the shadow
// was decided by then (it did not exist yet, or the id is unknown). Safe for concurrent use.
//
// It assumes, as the whole design does, that a shadow's commits are decided in log order
// (optimistic concurrency serializes them) and stored a moment after they are decided. It reads
// the last commit stored at or before t with one direct get (`multi_last` with `up_to_time`),
// then walks forward while the following commits were still decided by t (a decision stored a
// moment after t). When the stored times do not bound the decision times (a deciding clock other
// than the server's) it reads the shadow's whole history instead, so the answer is the same
// either way; only the cost differs (two direct gets instead of a replay of every commit).
func (s *Store) CommitAsOf(ctx context.Context, shadowID string, t time.Time) (*Record, error) {
	subject := s.cfg.Prefix + ".evt.*." + shadowID
	cand, err := s.lastStoredBy(ctx, subject, t)
	if err != nil {
		return nil, err
	}
	if cand != nil {
		if dt, err := cand.DecisionTime(); err != nil {
			return nil, err
		} else if dt.After(t) {
			return s.commitAsOfScan(ctx, shadowID, t) // decided after it was stored: another clock
		}
	}
	var from uint64 = 1
	if cand != nil {
		from = cand.Seq + 1
		subject = cand.Subject
	}
	for range asOfWalk {
		next, err := s.nextOnSubject(ctx, subject, from)
		if err != nil {
			return nil, err
		}
		if next == nil {
			if s.cfg.Replicas > 1 {
				// A replica's direct get may be a moment behind the leader: confirm the end.
				last, err := s.leaderLast(ctx, s.cfg.Stream, subject)
				if err != nil {
					return nil, err
				}
				if last != nil && (cand == nil || last.Seq != cand.Seq) {
					return s.commitAsOfScan(ctx, shadowID, t)
				}
			}
			return cand, nil
		}
		dt, err := next.DecisionTime()
		if err != nil {
			return nil, err
		}
		if dt.After(t) {
			return cand, nil
		}
		cand, subject, from = next, next.Subject, next.Seq+1
	}
	return s.commitAsOfScan(ctx, shadowID, t)
}

// commitAsOfScan is CommitAsOf by reading the shadow's whole history.
func (s *Store) commitAsOfScan(ctx context.Context, shadowID string, t time.Time) (*Record, error) {
	recs, err := s.History(ctx, shadowID)
	if err != nil {
		return nil, err
	}
	return asOfIn(recs, t)
}

// asOfIn is the rule CommitAsOf implements, over a shadow's records in log order: the last
// record before the first one decided after t.
func asOfIn(recs []*Record, t time.Time) (*Record, error) {
	var at *Record
	for _, r := range recs {
		dt, err := r.DecisionTime()
		if err != nil {
			return nil, err
		}
		if !dt.IsZero() && dt.After(t) {
			break
		}
		at = r
	}
	return at, nil
}

// nextOnSubject returns the first message on subject (wildcards allowed) with a sequence >=
// from, or nil (a direct get, next_by_subj).
func (s *Store) nextOnSubject(ctx context.Context, subject string, from uint64) (*Record, error) {
	m, err := s.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventstore: get %s from %d: %w", subject, from, unavailable(err))
	}
	return s.newRecord(m.Subject, m.Sequence, m.Time, m.Header, m.Data), nil
}

// lastStoredBy returns the last message on subject stored at or before t, or nil: a batched
// direct get (ADR-31) with multi_last and up_to_time, which nats.go does not wrap.
func (s *Store) lastStoredBy(ctx context.Context, subject string, t time.Time) (*Record, error) {
	req, _ := json.Marshal(struct {
		MultiLast []string  `json:"multi_last"`
		UpToTime  time.Time `json:"up_to_time"`
	}{[]string{subject}, t.UTC()})
	fail := func(err error) (*Record, error) {
		return nil, fmt.Errorf("eventstore: last of %s by %s: %w", subject, t.Format(time.RFC3339Nano), err)
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return fail(unavailable(err))
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+s.cfg.Stream, inbox, req); err != nil {
		return fail(unavailable(err))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var last *Record
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fail(unavailable(err))
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			return last, nil
		case "404": // nothing stored by then
			return nil, nil
		default:
			return fail(fmt.Errorf("direct get answered %s %s", status, m.Header.Get("Description")))
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fail(fmt.Errorf("direct get: bad sequence: %w", err))
		}
		ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		if err != nil {
			return fail(fmt.Errorf("direct get: bad time stamp: %w", err))
		}
		last = s.newRecord(m.Header.Get(jetstream.SubjectHeader), seq, ts, m.Header, m.Data)
	}
}
