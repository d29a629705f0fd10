package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// Loaded is one shadow read by LoadMany: its state and its last commit's sequence (0: none).
type Loaded struct {
	State domain.Shadow
	Seq   uint64
}

// batchMax is the most subjects one batched direct get names: the server answers at most 1,024
// messages to one request.
const batchMax = 1000

// LoadMany is Load for many shadows of one resource, in the order of shadowIDs: one batched
// direct get per thousand shadows instead of one round trip each (a reconciliation page). Each
// state is what Load would return at the moment of its read, with Load's guarantees: a replica
// may answer a moment behind the leader, "none" is confirmed with the leader, and a record that
// is not ours stands for its last good commit.
func (s *Store) LoadMany(ctx context.Context, resource string, shadowIDs []string) ([]Loaded, error) {
	out := make([]Loaded, len(shadowIDs))
	subjects := make([]string, len(shadowIDs))
	for i, id := range shadowIDs {
		subjects[i] = s.Subject(resource, id)
	}
	found := make([]bool, len(shadowIDs))
	err := s.lastMany(ctx, s.cfg.Stream, subjects, func(i int, r *Record) error {
		st, seq, err := s.stateOf(ctx, r, nil)
		out[i], found[i] = Loaded{State: st, Seq: seq}, true
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok && s.cfg.Replicas > 1 {
			if out[i].State, out[i].Seq, err = s.Load(ctx, resource, shadowIDs[i]); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// lastMany reads the last message of each subject (no wildcards) with batched direct gets and
// calls fn with the subject's position for each one found; subjects without messages are
// skipped. A subject named twice is reported at each position.
func (s *Store) lastMany(ctx context.Context, stream string, subjects []string, fn func(i int, r *Record) error) error {
	for lo := 0; lo < len(subjects); lo += batchMax {
		chunk := subjects[lo:min(lo+batchMax, len(subjects))]
		pos := make(map[string][]int, len(chunk))
		for i, subj := range chunk {
			pos[subj] = append(pos[subj], lo+i)
		}
		distinct := make([]string, 0, len(pos))
		for subj := range pos {
			distinct = append(distinct, subj)
		}
		err := s.directLastMany(ctx, stream, distinct, func(r *Record) error {
			for _, i := range pos[r.Subject] {
				if err := fn(i, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// batchTimeout bounds one batched read when ctx has no deadline of its own.
const batchTimeout = 10 * time.Second

// directLastMany asks stream for the last message of each subject in one batched direct get
// (multi_last, nats-server 2.11+) and calls fn with each message. The server ends the answer with
// an end-of-batch status: an answer cut short (a timeout, a dropped connection) is an error,
// never a shorter result. The reply channel holds the whole answer, so the client never drops a
// message as a slow consumer, and it is a few KiB rather than a subscription's default 64k slots.
func (s *Store) directLastMany(ctx context.Context, stream string, subjects []string, fn func(*Record) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("eventstore: batch load: %w", unavailable(err))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	req, _ := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	inbox := s.nc.NewRespInbox()
	ch := make(chan *nats.Msg, len(subjects)+2)
	sub, err := s.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("eventstore: batch load: %w", unavailable(err))
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return fmt.Errorf("eventstore: batch load: %w", unavailable(err))
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("eventstore: batch load of %d subjects: %w", len(subjects), unavailable(ctx.Err()))
		case m := <-ch:
			if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
				switch status {
				case "204", "404": // end of batch; no subject has a message
					return nil
				}
				return fmt.Errorf("eventstore: batch load: %w", unavailable(fmt.Errorf("status %s %s", status, m.Header.Get("Description"))))
			}
			r, err := s.directRecord(m)
			if err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
	}
}

// directRecord is the record a direct get answered with (its subject, sequence and time in
// headers).
func (s *Store) directRecord(m *nats.Msg) (*Record, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("eventstore: batch load: sequence header: %w", err)
	}
	tm, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return nil, fmt.Errorf("eventstore: batch load: time header: %w", err)
	}
	r := s.newRecord(m.Header.Get(jetstream.SubjectHeader), seq, tm, m.Header, m.Data)
	op := m.Header.Get("KV-Operation")
	r.kvDeleted = op == "DEL" || op == "PURGE"
	return r, nil
}

// LastMany returns the last record of each subject of stream (nil where it has none), in the
// order of subjects, read with batched direct gets (a replica may answer, a moment behind the
// leader: confirm a nil that matters with LeaderLast). For readers of the project's other
// streams and buckets that need many keys at once.
func (s *Store) LastMany(ctx context.Context, stream string, subjects []string) ([]*Record, error) {
	out := make([]*Record, len(subjects))
	err := s.lastMany(ctx, stream, subjects, func(i int, r *Record) error {
		if !r.kvDeleted {
			out[i] = r
		}
		return nil
	})
	return out, err
}

// LeaderLast returns the last record of subject in stream as the stream's leader holds it (nil if
// none, or if it is a KV delete marker): read-after-write on a replicated stream.
func (s *Store) LeaderLast(ctx context.Context, stream, subject string) (*Record, error) {
	r, err := s.leaderLast(ctx, stream, subject)
	if err != nil || r == nil || r.kvDeleted {
		return nil, err
	}
	return r, nil
}

// Owners is Owner for many identifiers at once, in the order of claims ("" where no shadow holds
// it): one batched read instead of one each.
func (s *index) Owners(ctx context.Context, claims []domain.Claim) ([]string, error) {
	keys := make([]string, len(claims))
	for i, c := range claims {
		keys[i] = claimKey(c)
	}
	entries, err := s.kv.GetMany(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("eventstore: lookup identifiers: %w", unavailable(err))
	}
	out := make([]string, len(claims))
	for i, e := range entries {
		if e != nil {
			out[i] = parseHolder(e.value).ShadowID
		}
	}
	return out, nil
}

// GetMany reads keys with batched direct gets on one replica; on a replicated bucket it reads
// each key from the leader instead (leaderReads at a time): a replica a moment behind showed a
// released identifier still held (the contract suite's cluster run, once in 30 under load), and
// reconciliation would then have marked the old holder seen and the new one missing.
func (k kvIndex) GetMany(ctx context.Context, keys []string) ([]*indexEntry, error) {
	if k.leader != nil {
		return k.latestMany(ctx, keys)
	}
	subjects := make([]string, len(keys))
	for i, key := range keys {
		subjects[i] = "$KV." + k.bucket + "." + key
	}
	out := make([]*indexEntry, len(keys))
	err := k.store.lastMany(ctx, "KV_"+k.bucket, subjects, func(i int, r *Record) error {
		if !r.kvDeleted {
			out[i] = &indexEntry{value: r.data, revision: r.Seq, created: r.Time}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// latestMany reads keys from the bucket's leader, leaderReads at a time.
func (k kvIndex) latestMany(ctx context.Context, keys []string) ([]*indexEntry, error) {
	out := make([]*indexEntry, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, leaderReads)
	var wg sync.WaitGroup
	for i, key := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out[i], _, errs[i] = k.Latest(ctx, key)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first: with NATS gone, every read fails alike
		}
	}
	return out, nil
}

// leaderReads is how many keys latestMany reads from the leader at once.
const leaderReads = 32

// GetMany reads keys one by one (nil where absent).
func (k *memKV) GetMany(ctx context.Context, keys []string) ([]*indexEntry, error) {
	out := make([]*indexEntry, len(keys))
	for i, key := range keys {
		if e, err := k.Get(ctx, key); err == nil {
			out[i] = &e
		}
	}
	return out, nil
}

// LoadMany is Load for many shadows, in the order of shadowIDs.
func (m *Memory) LoadMany(ctx context.Context, resource string, shadowIDs []string) ([]Loaded, error) {
	out := make([]Loaded, len(shadowIDs))
	for i, id := range shadowIDs {
		st, seq, err := m.Load(ctx, resource, id)
		if err != nil {
			return nil, err
		}
		out[i] = Loaded{State: st, Seq: seq}
	}
	return out, nil
}
