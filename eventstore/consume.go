package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// History returns every record of one shadow in order (an empty slice for an unknown shadow).
func (s *Store) History(ctx context.Context, shadowID string) ([]*Record, error) {
	subject := s.cfg.Prefix + ".evt.*." + shadowID
	last, err := s.LastRecord(ctx, subject)
	if err == nil && s.cfg.Replicas > 1 {
		// Read-after-write: a replica a moment behind the leader would end the history early.
		last, err = s.leaderLast(ctx, s.cfg.Stream, subject)
	}
	if err != nil || last == nil {
		return nil, err
	}
	// The last record names the exact subject: a consumer filtered on it reads only the shadow's
	// messages, where the wildcard filter would make the server scan the stream.
	var out []*Record
	err = s.replayToEnd(ctx, []string{last.Subject}, 1, last.Seq, func(r *Record) error {
		if _, err := r.decode(); err != nil {
			s.skipped("history", r, err) // not ours: a shadow's history is its decisions
			return nil
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// replayToEnd calls fn for every record of filters from from up to end (a sequence the leader
// holds), in order. A consumer served by a replica a moment behind the leader can end before end:
// it reads again from where that one ended, every historyReread, historyRereads times at most.
func (s *Store) replayToEnd(ctx context.Context, filters []string, from, end uint64, fn func(*Record) error) error {
	next := from
	for attempt := 0; ; attempt++ {
		err := s.replay(ctx, filters, next, end, func(r *Record) error {
			next = r.Seq + 1
			return fn(r)
		})
		if err != nil || next > end || attempt == historyRereads {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(historyReread):
		}
	}
}

// historyRereads bounds replayToEnd's reads again (History, Replay) when a replica answered
// behind the leader, every historyReread.
const (
	historyRereads = 40
	historyReread  = 25 * time.Millisecond
)

// Replay calls fn for every event record with sequence >= from, in order, up to the stream's
// last sequence at the time of the call, and returns that sequence. fn's error stops the replay.
func (s *Store) Replay(ctx context.Context, from uint64, fn func(*Record) error) (uint64, error) {
	last, err := s.LastSeq(ctx)
	if err != nil {
		return 0, err
	}
	if from == 0 {
		from = 1
	}
	if last < from {
		return last, nil
	}
	filter := s.cfg.Prefix + ".evt.>"
	if s.cfg.Replicas == 1 {
		return last, s.replay(ctx, []string{filter}, from, last, fn)
	}
	// A consumer served by a replica a moment behind the leader ends at what that replica holds
	// (the contract suite's cluster run: records 3 and 4 of 5, once in 45 under load): read up to
	// the leader's last event record.
	end, err := s.leaderLast(ctx, s.cfg.Stream, filter)
	if err != nil || end == nil || end.Seq < from {
		return last, err
	}
	return max(last, end.Seq), s.replayToEnd(ctx, []string{filter}, from, end.Seq, fn)
}

// Follow calls fn for every event record with sequence >= from, in order, and keeps following
// new ones until ctx ends or fn fails (ephemeral: nothing is stored about the reader). It returns
// nil when ctx ends.
func (s *Store) Follow(ctx context.Context, from uint64, fn func(*Record) error) error {
	if from == 0 {
		from = 1
	}
	err := s.consume(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.cfg.Prefix + ".evt.>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	}, followForever, fn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// orderedInactive is how long the server keeps a reader's consumer after its process stopped
// pulling without deleting it (a crash): short, since every reader makes a new one.
const orderedInactive = 30 * time.Second

// orderedHeartbeat is the idle heartbeat of a reader's pull requests: two missed, and nats.go
// makes the consumer again. On a cluster a pull request sent right after the consumer was made
// is sometimes lost (the server the client is connected to has not yet heard, over its routes,
// of the consumer's interest on the server that hosts it): 2 in 100 history reads of a 3-node
// cluster waited 10 s, nats.go's default two missed heartbeats of 5 s.
const orderedHeartbeat = 500 * time.Millisecond

// followForever as consume's until: never stop at the end of the stream.
const followForever = ^uint64(0)

// LastPerShadow calls fn with the last record of every shadow (the stream's last message per
// event subject), in stream order, and returns the stream's last sequence when it started. Each
// record holds its shadow's state, so this is all a projection rebuild needs: its cost grows with
// the number of shadows, not with the length of their histories.
func (s *Store) LastPerShadow(ctx context.Context, fn func(*Record) error) (uint64, error) {
	last, err := s.LastSeq(ctx)
	if err != nil || last == 0 {
		return last, err
	}
	return last, s.consume(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.cfg.Prefix + ".evt.>"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	}, 0, fn)
}

func (s *Store) replay(ctx context.Context, filters []string, from, until uint64, fn func(*Record) error) error {
	return s.consume(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	}, until, fn)
}

// LastPerSubject calls fn with the last message of every subject of stream that filter matches,
// in stream order, headers only (no payload), skipping a KV bucket's delete markers: the keys of
// a bucket without their values. It holds at most lastPerSubjectWindow messages at a time, however
// many subjects match.
func (s *Store) LastPerSubject(ctx context.Context, stream, filter string, fn func(*Record) error) error {
	return s.consumeStream(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    true,
	}, lastPerSubjectWindow, 0, func(r *Record) error {
		if r.kvDeleted {
			return nil
		}
		return fn(r)
	})
}

// lastPerSubjectWindow is how many messages LastPerSubject asks for at once.
const lastPerSubjectWindow = 1000

// consume runs an ordered consumer until it has delivered everything pending when it started
// (or the record with sequence until, if not 0).
func (s *Store) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, until uint64, fn func(*Record) error) error {
	return s.consumeStream(ctx, s.cfg.Stream, cfg, 5000, until, fn)
}

// consumeStream is consume on any stream, asking for window messages at a time.
func (s *Store) consumeStream(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, window int, until uint64, fn func(*Record) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = orderedInactive
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("eventstore: replay: %w", unavailable(err))
	}
	// Stopping an ordered consumer leaves it on the server until its inactive threshold: with
	// nats.go's default of 5 minutes, a thousand history or as-of queries in that time reached the
	// server's default limit of 1,000 consumers per stream, and every new consumer (the service's
	// own included) was refused. Delete it when done; the threshold covers a process that dies.
	defer func() {
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = s.js.DeleteConsumer(dctx, stream, info.Name)
			cancel()
		}
	}()
	it, err := cons.Messages(jetstream.PullMaxMessages(window), jetstream.PullHeartbeat(orderedHeartbeat))
	if err != nil {
		return fmt.Errorf("eventstore: replay: %w", unavailable(err))
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	if until != followForever {
		// Nothing matches the filter: no message will ever come to say so. The consumer's
		// creation answer already says how many messages match (no extra round trip).
		info := cons.CachedInfo()
		if info == nil {
			if info, err = cons.Info(ctx); err != nil {
				return fmt.Errorf("eventstore: replay: %w", unavailable(err))
			}
		}
		if info.NumPending == 0 && info.Delivered.Consumer == 0 {
			return nil
		}
	}
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("eventstore: replay: %w", unavailable(err))
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("eventstore: replay: %w", err)
		}
		r := s.newRecord(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
		if cfg.HeadersOnly {
			op := m.Headers().Get("KV-Operation")
			r.kvDeleted = op == "DEL" || op == "PURGE"
		}
		if err := fn(r); err != nil {
			return err
		}
		if until == followForever {
			continue
		}
		if (until > 0 && md.Sequence.Stream >= until) || md.NumPending == 0 {
			return nil
		}
	}
}

// SubscribeOptions tune a durable subscription.
type SubscribeOptions struct {
	// Batch is the most records handed to fn at once (default 256).
	Batch int
	// Logger receives retry notices (default slog.Default()).
	Logger *slog.Logger
	// Workers is the number of parallel workers of SubscribeSharded (default 64).
	Workers int
	// Filter is the subject filter (default: every shadow's events, <prefix>.evt.>).
	Filter string
	// AckWait is how long JetStream waits before redelivering records a subscriber took and did
	// not acknowledge (default 10s): after a crash, that is how long the records of the dead
	// subscriber wait. A batch that takes longer is kept alive with progress notices.
	AckWait time.Duration
}

// Subscribe delivers every event record to fn through the durable consumer `name`, in stream
// order, in batches. Each record of a batch is acknowledged only when fn returns nil for the
// batch; when fn fails it is called again with the same batch after a backoff. Records a crashed
// subscriber had taken are redelivered after AckWait, possibly after newer ones: fn must be
// idempotent and must not assume that a record is newer than the ones it saw before. (Records are
// acknowledged one by one: an ack-all of a newer record would acknowledge older ones still
// awaiting redelivery, and they would never be processed.) Several processes may subscribe with
// the same name. Subscribe returns nil when ctx ends, or at once the error that kept it from
// making or pulling from the consumer (ErrUnavailable when NATS did not answer): starting it
// again is the caller's, and nothing is lost meanwhile.
func (s *Store) Subscribe(ctx context.Context, name string, o SubscribeOptions, fn func(context.Context, []*Record) error) error {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	cons, made, err := s.durable(ctx, name, &o, 4*o.Batch)
	if err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, o.Batch)
	var lastErr atomic.Pointer[error]
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	}, durablePull(name, o.Logger, o.Batch, &lastErr)...)
	if err != nil {
		return fmt.Errorf("eventstore: consume %s: %w", name, unavailable(err))
	}
	defer cc.Stop()

	batch := make([]jetstream.Msg, 0, o.Batch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-cc.Closed():
			if len(msgs) == 0 {
				return consumeEnded(name, &lastErr)
			}
		case m := <-msgs:
			batch = append(batch, m)
		}
	drain:
		for len(batch) < o.Batch {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		recs := make([]*Record, 0, len(batch))
		for _, m := range batch {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			rec := s.newRecord(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
			rec.Deliveries, rec.Replayed = md.NumDelivered, md.Timestamp.Before(made)
			recs = append(recs, rec)
		}
		if len(recs) == 0 {
			continue
		}
		if err := s.process(ctx, name, batch, recs, o, fn, cc.Closed()); err != nil {
			if errors.Is(err, errConsumeEnded) {
				return consumeEnded(name, &lastErr)
			}
			return nil // ctx ended; unacked records are redelivered to the next subscriber
		}
	}
}

// errConsumeEnded: consuming stopped under a batch (its consumer deleted), whose acknowledgement
// can never be confirmed; the next consumer hands its records out again.
var errConsumeEnded = errors.New("consuming ended")

// process runs fn until it succeeds, keeping the batch's lease alive, then acks the batch. It
// gives up the confirmation of the ack when consuming has ended (ended closed).
func (s *Store) process(ctx context.Context, name string, batch []jetstream.Msg, recs []*Record, o SubscribeOptions, fn func(context.Context, []*Record) error, ended <-chan struct{}) error {
	log := o.Logger
	backoff := 50 * time.Millisecond
	for {
		done := make(chan error, 1)
		go func() { done <- fn(ctx, recs) }()
		tick := time.NewTicker(o.AckWait / 3)
		var err error
	wait:
		for {
			select {
			case err = <-done:
				break wait
			case <-tick.C:
				for _, m := range batch {
					_ = m.InProgress()
				}
			}
		}
		tick.Stop()
		if err == nil {
			// A lost ack only causes a redelivery, which fn tolerates; the last one is confirmed so
			// that a batch is known to be done before the next is taken.
			for _, m := range batch[:len(batch)-1] {
				_ = m.Ack()
			}
			for {
				aerr := batch[len(batch)-1].DoubleAck(ctx)
				if aerr == nil || errors.Is(aerr, jetstream.ErrMsgAlreadyAckd) {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-ended:
					return errConsumeEnded
				case <-time.After(backoff):
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("batch failed, retrying", "consumer", name, "records", len(recs), "first", recs[0].Seq, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ended:
			return errConsumeEnded
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// SubscribeSharded delivers every event record to fn through the durable consumer `name`, with
// o.Workers workers: the records of one shadow always go to the same worker, in stream order, so
// shadows are handled in parallel and each shadow in order, without batch boundaries. A record
// is acknowledged as soon as fn returns nil for it; when fn fails it is retried with a backoff
// (the worker's other records wait), so nothing is skipped. As with Subscribe, records of a
// crashed subscriber are redelivered after AckWait, possibly after newer ones: fn must be
// idempotent. Returns as Subscribe does.
func (s *Store) SubscribeSharded(ctx context.Context, name string, o SubscribeOptions, fn func(context.Context, *Record) error) error {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	cons, made, err := s.durable(ctx, name, &o, 8*o.Workers)
	if err != nil {
		return err
	}
	queues := make([]chan jetstream.Msg, o.Workers)
	slots := make([]busySlot, o.Workers)
	// The workers' context also ends when consuming stops under them (see below).
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	go keepLeases(wctx, o.AckWait/3, slots)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, 16)
		wg.Go(func() {
			for m := range queues[i] {
				s.processOne(wctx, name, m, made, o, fn, &slots[i])
			}
		})
	}
	stop := func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}
	var lastErr atomic.Pointer[error]
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case queues[shard(m.Subject(), len(queues))] <- m:
		case <-ctx.Done():
		}
	}, durablePull(name, o.Logger, 4*o.Workers, &lastErr)...)
	if err != nil {
		stop()
		return fmt.Errorf("eventstore: consume %s: %w", name, unavailable(err))
	}
	select {
	case <-ctx.Done():
		cc.Stop()
		<-cc.Closed()
		stop()
		return nil
	case <-cc.Closed():
		// What the workers hold and have not finished is redelivered to the next subscriber.
		stopWorkers()
		stop()
		return consumeEnded(name, &lastErr)
	}
}

// shard picks the worker of a subject: FNV-1a over its bytes, without allocating (this runs for
// every record of every sharded consumer).
func shard(subject string, workers int) int {
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h ^= uint32(subject[i])
		h *= 16777619
	}
	return int(h % uint32(workers))
}

// processOne runs fn on one record until it succeeds (or ctx ends), then acknowledges it. Its
// lease is kept alive by the worker's keeper while it runs (slot names the record).
func (s *Store) processOne(ctx context.Context, name string, m jetstream.Msg, made time.Time, o SubscribeOptions, fn func(context.Context, *Record) error, slot *busySlot) {
	if ctx.Err() != nil {
		return // redelivered to the next subscriber
	}
	md, err := m.Metadata()
	if err != nil {
		_ = m.Term()
		return
	}
	rec := s.newRecord(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Headers(), m.Data())
	rec.Deliveries, rec.Replayed = md.NumDelivered, md.Timestamp.Before(made)
	slot.hold(m)
	defer slot.hold(nil)
	backoff := 50 * time.Millisecond
	for {
		err := fn(ctx, rec)
		if err == nil {
			_ = m.Ack()
			return
		}
		if ctx.Err() != nil {
			return
		}
		o.Logger.Warn("record failed, retrying", "consumer", name, "seq", rec.Seq, "subject", rec.Subject, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// busySlot is the record a worker is handling, for its keeper.
type busySlot struct{ cur atomic.Pointer[busyMsg] }

type busyMsg struct {
	m     jetstream.Msg
	since time.Time
}

func (b *busySlot) hold(m jetstream.Msg) {
	if m == nil {
		b.cur.Store(nil)
		return
	}
	b.cur.Store(&busyMsg{m, time.Now()})
}

// keepLeases tells the server, every AckWait/3 until ctx ends, that the records the workers
// have been handling for that long are still in progress, so that a slow handler (a retry with
// backoff, a slow target) does not get its record redelivered elsewhere. One goroutine for all
// workers: the handlers run on the workers themselves, with nothing started per record.
func keepLeases(ctx context.Context, every time.Duration, slots []busySlot) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i := range slots {
			if b := slots[i].cur.Load(); b != nil && time.Since(b.since) >= every {
				_ = b.m.InProgress()
			}
		}
	}
}

// durableHeartbeat is the idle heartbeat of a durable subscription's pull requests. A pull
// request can be lost without a word (on a cluster, one sent while the consumer's leader is still
// being elected or its interest is still crossing the routes; any consumer's after a leader
// change): nats.go sends another only after two missed heartbeats, with its default of 15 s (half
// the 30 s expiry) a 30 s stall of the dispatcher, the projector or the timers. The contract
// suite's subscriptions on a 3-node cluster under load met it about once in 50 (the consumer
// made, its records pending, no pull request waiting), and CI failed on it. One second bounds it
// at two; an idle heartbeat costs one small message per second per subscription.
const durableHeartbeat = time.Second

// durablePull are the pull options of Subscribe and SubscribeSharded: up to max messages
// waiting in the client, the heartbeat above, and consume errors logged (a missed heartbeat at
// debug, since nats.go recovers by pulling again, as does the connection's closing at a stop;
// the consumer deleted under it as a warning; anything else, such as a leadership change, at
// info). The last error is kept in last: nats.go stops consuming for good on some (the
// consumer deleted under it), and the subscriber says why it ended.
func durablePull(name string, log *slog.Logger, max int, last *atomic.Pointer[error]) []jetstream.PullConsumeOpt {
	return []jetstream.PullConsumeOpt{
		jetstream.PullMaxMessages(max),
		jetstream.PullHeartbeat(durableHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			last.Store(&err)
			switch {
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				log.Debug("consume: no heartbeat, pulling again", "consumer", name)
				return
			case errors.Is(err, jetstream.ErrConnectionClosed):
				log.Debug("consume: connection closed", "consumer", name)
				return
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) {
				log.Warn("consume: the consumer was deleted", "consumer", name)
				return
			}
			log.Info("consume", "consumer", name, "err", err)
		}),
	}
}

// consumeEnded is the error of a subscription whose consuming stopped while its context lives.
func consumeEnded(name string, last *atomic.Pointer[error]) error {
	why := errors.New("stopped without a reason")
	if e := last.Load(); e != nil {
		why = *e
	}
	return fmt.Errorf("eventstore: consume %s: %w: %w", name, ErrUnavailable, why)
}

// durable creates or updates the durable consumer of the event subjects (explicit acks: see
// Subscribe) and fills in the options' defaults. It returns when the consumer was first made,
// by the server's clock: the records stored before are Replayed.
func (s *Store) durable(ctx context.Context, name string, o *SubscribeOptions, maxAckPending int) (jetstream.Consumer, time.Time, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.AckWait <= 0 {
		o.AckWait = 10 * time.Second
	}
	if o.Filter == "" {
		o.Filter = s.cfg.Prefix + ".evt.>"
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "shadowbridge " + name,
		FilterSubject: o.Filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("eventstore: consumer %s: %w", name, unavailable(err))
	}
	info := cons.CachedInfo()
	if info == nil {
		if info, err = cons.Info(ctx); err != nil {
			return nil, time.Time{}, fmt.Errorf("eventstore: consumer %s: %w", name, unavailable(err))
		}
	}
	return cons, info.Created, nil
}

// ScanOptions select the records of an audit.
type ScanOptions struct {
	Resource string    // only this resource's shadows ("" = every resource)
	Since    time.Time // records stored at or after this time (zero = from the start)
	Until    time.Time // records stored before this time (zero = up to the end)
}

// errScanDone ends a scan at ScanOptions.Until.
var errScanDone = errors.New("scan done")

// Scan calls fn for every event record o selects, in log order, up to the stream's last sequence
// at the time of the call, which it returns. It reads through an ordered consumer one record at a
// time, so memory stays constant however long the log is. fn's error stops the scan.
func (s *Store) Scan(ctx context.Context, o ScanOptions, fn func(*Record) error) (uint64, error) {
	filter := s.cfg.Prefix + ".evt.>"
	if o.Resource != "" {
		if !domain.ValidToken(o.Resource) {
			return 0, fmt.Errorf("eventstore: scan: %w: resource %q", domain.ErrUnknownResource, o.Resource)
		}
		filter = s.cfg.Prefix + ".evt." + o.Resource + ".>"
	}
	if !o.Until.IsZero() && !o.Since.IsZero() && !o.Until.After(o.Since) {
		return 0, fmt.Errorf("eventstore: scan: %w: until (%s) must be after since (%s)", domain.ErrInvalidCommand,
			o.Until.Format(time.RFC3339), o.Since.Format(time.RFC3339))
	}
	last, err := s.LastSeq(ctx)
	if err != nil || last == 0 {
		return last, err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !o.Since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &o.Since
	}
	err = s.consume(ctx, cfg, last, func(r *Record) error {
		if r.Seq > last || (!o.Until.IsZero() && !r.Time.Before(o.Until)) {
			return errScanDone
		}
		return fn(r)
	})
	if errors.Is(err, errScanDone) {
		err = nil
	}
	return last, err
}
