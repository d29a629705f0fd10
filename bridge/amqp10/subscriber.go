package amqp10

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/go-amqp"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Subscriber receives messages from AMQP 1.0 addresses (the watermill topic is the address).
// Each Subscribe opens a receiver link of its own and hands its messages out one at a time: the
// next comes after Ack (the delivery is accepted) or Nack (modified with delivery-failed, so the
// broker redelivers it and counts the attempt: Artemis moves it to its dead-letter address after
// max-delivery-attempts). A message the Marshaler cannot read is rejected. A broken link is
// re-opened with the connection's backoff; an unsettled delivery is then redelivered by the
// broker (at-least-once).
type Subscriber struct {
	c       *connection
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// NewSubscriber validates the configuration; it does not connect (the first Subscribe does).
func NewSubscriber(cfg Config) (*Subscriber, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Subscriber{c: &connection{cfg: cfg}, closing: make(chan struct{})}, nil
}

// Subscribe implements message.Subscriber. The channel is closed when ctx ends or the
// Subscriber is closed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	select {
	case <-s.closing:
		return nil, ErrClosed
	default:
	}
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.consume(ctx, topic, out)
	}()
	return out, nil
}

func (s *Subscriber) consume(ctx context.Context, topic string, out chan<- *message.Message) {
	log := s.c.cfg.Logger.With(watermill.LogFields{"topic": topic})
	for failed := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		default:
		}
		rcv, gen, err := s.receiver(ctx, topic)
		if err == nil {
			failed = 0
			err = s.receive(ctx, rcv, out, log)
			s.closeLink(rcv)
			if err == nil {
				return // ctx ended or the Subscriber closed
			}
			if broken(err) {
				s.c.drop(gen, err)
			}
		}
		failed++
		wait := min(s.c.cfg.MinBackoff<<min(failed-1, 20), s.c.cfg.MaxBackoff)
		var nc *NotConnectedError
		if errors.As(err, &nc) && nc.RetryIn > 0 {
			wait = nc.RetryIn
		}
		log.Debug("amqp10: subscription interrupted", watermill.LogFields{"err": err, "retry_in": wait})
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-time.After(wait):
		}
	}
}

func (s *Subscriber) receiver(ctx context.Context, topic string) (*amqp.Receiver, int, error) {
	sess, gen, err := s.c.session(ctx)
	if err != nil {
		return nil, 0, err
	}
	lctx, cancel := context.WithTimeout(ctx, s.c.cfg.DialTimeout)
	defer cancel()
	credit := s.c.cfg.Credit
	if s.c.cfg.PrefetchBytes > 0 {
		credit = -1 // by hand: creditWindow
	}
	rcv, err := sess.NewReceiver(lctx, topic, &amqp.ReceiverOptions{Credit: credit, SourceCapabilities: []string{s.c.cfg.Capability}})
	if err != nil {
		if broken(err) && !isRemote(err) {
			s.c.drop(gen, err)
		}
		return nil, gen, fmt.Errorf("amqp10: address %q: %w", topic, err)
	}
	return rcv, gen, nil
}

// receive hands out messages until ctx ends or the Subscriber closes (nil), or the link fails.
// With Concurrency above 1 it hands out the next message without waiting for the last one's
// settlement, up to Concurrency in flight, one at a time per Lane.
func (s *Subscriber) receive(ctx context.Context, rcv *amqp.Receiver, out chan<- *message.Message, log watermill.LoggerAdapter) error {
	rctx, cancel := context.WithCancel(ctx)
	f := newFlight(max(s.c.cfg.Concurrency, 1))
	defer func() { cancel(); f.wait() }() // every delivery settled (released at worst) before the link closes
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-rctx.Done():
		}
	}()
	var w *creditWindow
	if s.c.cfg.PrefetchBytes > 0 {
		w = newCreditWindow(s.c.cfg.PrefetchBytes, int(s.c.cfg.Credit))
	}
	for {
		if err := f.err(); err != nil {
			return err
		}
		if w != nil {
			if n := w.topUp(); n > 0 {
				if err := rcv.IssueCredit(uint32(n)); err != nil {
					return err
				}
			}
		}
		m, err := rcv.Receive(rctx, nil)
		if err != nil {
			if rctx.Err() != nil {
				return nil
			}
			return err
		}
		if w != nil {
			w.received(bodySize(m))
		}
		msg, err := s.c.cfg.Marshaler.Unmarshal(m)
		if err != nil {
			log.Error("amqp10: unreadable message rejected", err, nil)
			if err := settle(rcv.RejectMessage, m, &amqp.Error{Condition: amqp.ErrCondDecodeError, Description: err.Error()}); err != nil {
				return err
			}
			continue
		}
		lane := ""
		if s.c.cfg.Lane != nil {
			lane = s.c.cfg.Lane(msg)
		}
		if !f.take(rctx, lane) {
			_ = settle(releaseFn(rcv), m, nil)
			return nil
		}
		mctx, done := context.WithCancel(ctx)
		msg.SetContext(mctx)
		select {
		case out <- msg:
		case <-rctx.Done():
			done()
			f.release(lane, nil)
			_ = settle(releaseFn(rcv), m, nil)
			return nil
		}
		f.run(func() {
			defer done()
			f.release(lane, settleAsHandled(rctx, rcv, m, msg))
		})
	}
}

// settleAsHandled waits for the handler's ack or nack of msg and settles its delivery m: accepted,
// rejected (with the condition the handler named) or modified (delivery failed: the broker sends
// it again); released when the subscription ends first.
func settleAsHandled(ctx context.Context, rcv *amqp.Receiver, m *amqp.Message, msg *message.Message) error {
	select {
	case <-msg.Acked():
		return settle(acceptFn(rcv), m, nil)
	case <-msg.Nacked():
		if why := msg.Metadata.Get(metadataReject); why != "" {
			cond, desc, _ := strings.Cut(why, "\x00")
			return settle(rcv.RejectMessage, m, &amqp.Error{Condition: amqp.ErrCond(cond), Description: desc})
		}
		return settle(modifyFn(rcv), m, nil)
	case <-ctx.Done():
		return settle(releaseFn(rcv), m, nil)
	}
}

// flight bounds the deliveries handed out and not yet settled, and keeps one per lane: a lane's
// next delivery waits for its last one's settlement. take and release run on the receive loop
// and the settling goroutines.
type flight struct {
	slots chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	lanes map[string]chan struct{} // lane -> closed when its delivery in flight is settled
	first error
}

func newFlight(n int) *flight {
	return &flight{slots: make(chan struct{}, n), lanes: map[string]chan struct{}{}}
}

// take waits for a free slot and, for a lane, for the lane's delivery in flight to be settled;
// false if ctx ended first.
func (f *flight) take(ctx context.Context, lane string) bool {
	select {
	case f.slots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	if lane == "" {
		return true
	}
	for {
		f.mu.Lock()
		busy, ok := f.lanes[lane]
		if !ok {
			f.lanes[lane] = make(chan struct{})
			f.mu.Unlock()
			return true
		}
		f.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			<-f.slots
			return false
		}
	}
}

// release frees a delivery's slot and lane and keeps the first settlement error.
func (f *flight) release(lane string, err error) {
	f.mu.Lock()
	if lane != "" {
		if ch, ok := f.lanes[lane]; ok {
			close(ch)
			delete(f.lanes, lane)
		}
	}
	if err != nil && f.first == nil {
		f.first = err
	}
	f.mu.Unlock()
	<-f.slots
}

// run runs fn on a goroutine that wait waits for.
func (f *flight) run(fn func()) { f.wg.Go(fn) }

func (f *flight) wait() { f.wg.Wait() }

func (f *flight) err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

// creditWindow manages a link's credit by hand so that what the broker sends ahead of the
// handler stays near a byte budget: the credit outstanding is at most budget divided by a
// decaying maximum of the recent messages' sizes (between 1 and most messages), topped up when
// half of it is used. A run of large messages after many small ones can still exceed the budget
// by the credit outstanding when the first large one came (at most most messages); from then on
// the window holds about budget bytes.
type creditWindow struct {
	budget, most int
	est          int // decaying maximum of recent message sizes
	outstanding  int // credit issued and not yet used by a transfer
}

func newCreditWindow(budget, most int) *creditWindow {
	return &creditWindow{budget: budget, most: max(most, 1), est: max(budget/16, 1)}
}

// want is the credit the estimate allows.
func (w *creditWindow) want() int { return min(max(w.budget/max(w.est, 1), 1), w.most) }

// received accounts for one transfer of size bytes.
func (w *creditWindow) received(size int) {
	w.outstanding = max(w.outstanding-1, 0)
	w.est = max(size, w.est-w.est/64)
}

// topUp returns the credit to issue now (0: enough is outstanding).
func (w *creditWindow) topUp() int {
	want := w.want()
	if w.outstanding*2 > want || w.outstanding >= want {
		return 0
	}
	n := want - w.outstanding
	w.outstanding = want
	return n
}

// bodySize is the size of a message's body, the bulk of what it holds in memory.
func bodySize(m *amqp.Message) int {
	n := 0
	for _, d := range m.Data {
		n += len(d)
	}
	switch v := m.Value.(type) {
	case string:
		n += len(v)
	case []byte:
		n += len(v)
	}
	return n
}

type settleFunc func(ctx context.Context, m *amqp.Message, e *amqp.Error) error

func acceptFn(r *amqp.Receiver) settleFunc {
	return func(ctx context.Context, m *amqp.Message, _ *amqp.Error) error { return r.AcceptMessage(ctx, m) }
}
func releaseFn(r *amqp.Receiver) settleFunc {
	return func(ctx context.Context, m *amqp.Message, _ *amqp.Error) error { return r.ReleaseMessage(ctx, m) }
}
func modifyFn(r *amqp.Receiver) settleFunc {
	return func(ctx context.Context, m *amqp.Message, _ *amqp.Error) error {
		return r.ModifyMessage(ctx, m, &amqp.ModifyMessageOptions{DeliveryFailed: true})
	}
}

// settle settles a delivery with its own deadline: the subscription's context may have ended.
func settle(f settleFunc, m *amqp.Message, e *amqp.Error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f(ctx, m, e)
}

func (s *Subscriber) closeLink(r *amqp.Receiver) {
	ctx, cancel := context.WithTimeout(context.Background(), s.c.cfg.CloseTimeout)
	defer cancel()
	_ = r.Close(ctx)
}

// Close ends every subscription, closes their channels and then the connection.
func (s *Subscriber) Close() error {
	s.once.Do(func() { close(s.closing) })
	s.wg.Wait()
	s.c.close()
	return nil
}

var _ message.Subscriber = (*Subscriber)(nil)

// metadataReject marks a message to be rejected rather than redelivered when it is Nack'ed.
const metadataReject = "_amqp10_reject"

// Reject marks msg so that its Nack rejects the delivery with the given AMQP error condition
// (amqp.ErrCondInvalidField, ...) instead of asking for a redelivery: for a message that can never
// be processed (Artemis moves it to its dead-letter address). Call it, then Nack (a router handler
// returns an error).
func Reject(msg *message.Message, condition amqp.ErrCond, description string) {
	msg.Metadata.Set(metadataReject, string(condition)+"\x00"+description)
}
