package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// The sample target system: a little account store in KV that consumes requests from a work
// queue and confirms them over NATS with the public confirm command, exactly as a real target
// system would. It assigns the primary identifier on add.
//
// It behaves as the README asks of target systems: it applies each operation once (an add's uid
// is derived from the operation id, so a redelivered add finds its account) and one account's
// operations in their order (the request's sequence and previousSequence, remembered per shadow
// in SampleOrderBucket with the answers given, so a redelivered request is answered as before).
const (
	SampleStream      = "PROV_SAMPLE"
	SampleBucket      = "PROV_SAMPLE_ACCOUNTS"
	SampleOrderBucket = "PROV_SAMPLE_ORDER"
	sampleDurable     = "PROV_SAMPLE_SYSTEM"
)

// SampleSubject is the work-queue subject of a resource served by the sample system.
func SampleSubject(prefix, resource string) string { return prefix + ".sample." + resource }

// NewSampleTarget returns the dispatcher side of the sample system for one resource.
func NewSampleTarget(ctx context.Context, js jetstream.JetStream, prefix, resource string) (*NATSTarget, error) {
	if _, err := ensureSampleStream(ctx, js, prefix); err != nil {
		return nil, err
	}
	return NewNATSTarget(ctx, js, SampleSubject(prefix, resource), SampleStream, SimplifiedJSON)
}

func ensureSampleStream(ctx context.Context, js jetstream.JetStream, prefix string) (jetstream.Stream, error) {
	s, err := eventstore.EnsureStream(ctx, js, jetstream.StreamConfig{
		Name: SampleStream, Subjects: []string{prefix + ".sample.>"}, Retention: jetstream.WorkQueuePolicy,
		Storage: jetstream.FileStorage, Description: "requests for shadowbridge's built-in sample target system",
	})
	if err != nil {
		return nil, fmt.Errorf("sample system: stream: %w", err)
	}
	return s, nil
}

// SampleSystem is the built-in target system for dev and demos.
type SampleSystem struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	prefix   string
	accounts jetstream.KeyValue
	order    jetstream.KeyValue
	primary  func(resource, objectClass string) string
	log      *slog.Logger
	ownMu    sync.Mutex
	own      map[uint64]struct{} // revisions of the accounts bucket this system wrote itself
}

// NewSampleSystem prepares the system; primary names the primary identifier attribute of an
// object class ("uid" when it returns "").
func NewSampleSystem(ctx context.Context, nc *nats.Conn, prefix string, primary func(resource, objectClass string) string, log *slog.Logger) (*SampleSystem, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if _, err := ensureSampleStream(ctx, js, prefix); err != nil {
		return nil, err
	}
	kv, err := eventstore.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: SampleBucket, History: 1, Description: "accounts of the sample target system"})
	if err != nil {
		return nil, fmt.Errorf("sample system: bucket: %w", err)
	}
	order, err := eventstore.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: SampleOrderBucket, History: 1, Description: "per account: the last operation the sample target system applied, and its recent answers"})
	if err != nil {
		return nil, fmt.Errorf("sample system: bucket: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &SampleSystem{nc: nc, js: js, prefix: prefix, accounts: kv, order: order, primary: primary, log: log.WithGroup("sample")}, nil
}

type sampleRequest struct {
	Operation          domain.ChangeType `json:"operation"`
	ObjectClass        string            `json:"objectClass"`
	Attributes         map[string][]any  `json:"attributes"`
	PrimaryIdentifiers map[string][]any  `json:"primaryIdentifiers"`
	Changes            map[string]struct {
		Add     []any  `json:"add"`
		Delete  []any  `json:"delete"`
		Replace *[]any `json:"replace"`
	} `json:"changes"`
}

// Run consumes requests until ctx ends. Requests are handled by sampleWorkers workers; a
// shadow's requests always go to the same worker, so they are applied in the order sent.
func (s *SampleSystem) Run(ctx context.Context) error {
	const sampleWorkers = 32
	cons, err := s.js.CreateOrUpdateConsumer(ctx, SampleStream, jetstream.ConsumerConfig{
		Durable: sampleDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 10 * time.Second, MaxAckPending: 1024,
	})
	if err != nil {
		return fmt.Errorf("sample system: consumer: %w", err)
	}
	var queues [sampleWorkers]chan jetstream.Msg
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan jetstream.Msg, 64)
		wg.Go(func() {
			for m := range queues[i] {
				if err := s.handle(ctx, m); err != nil {
					if ctx.Err() != nil {
						continue // shutting down: redelivered after AckWait
					}
					if errors.Is(err, errTooEarly) {
						// An earlier operation of this account is still on its way (redelivered
						// after a crash): wait for it.
						_ = m.NakWithDelay(200 * time.Millisecond)
						continue
					}
					s.log.Warn("request not handled; redelivering", "operation", m.Headers().Get("operationId"), "err", err)
					_ = m.NakWithDelay(time.Second)
					continue
				}
				_ = m.Ack()
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	// A lost pull request is noticed after two missed heartbeats: nats.go's default of 15 s
	// stalled the sample target for 30 s (eventstore's durableHeartbeat says more).
	it, err := cons.Messages(jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("sample system: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			s.log.Warn("receive failed", "err", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(m.Headers().Get("shadowId")))
		select {
		case queues[h.Sum32()%sampleWorkers] <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// errTooEarly: the request's predecessor has not been applied yet.
var errTooEarly = errors.New("sample system: an earlier operation of this account has not arrived yet")

// sampleAnswer is a confirmation as sent, kept to answer a redelivered request the same way.
type sampleAnswer struct {
	Result  domain.ResultStatus `json:"result"`
	Message string              `json:"message"`
	IDs     map[string][]any    `json:"ids,omitempty"`
}

// sampleOrder is what the system remembers of one account: the sequence of the last operation
// applied and the answers to its last few operations.
type sampleOrder struct {
	Last    int64                   `json:"last"`
	Answers map[string]sampleAnswer `json:"answers"`
	Recent  []string                `json:"recent"` // operation ids of Answers, oldest first
}

const sampleAnswersKept = 16

func (s *SampleSystem) handle(ctx context.Context, m jetstream.Msg) error {
	h := m.Headers()
	resource, opID, shadowID := h.Get("resource"), h.Get("operationId"), h.Get("shadowId")
	var peek struct {
		Operation   domain.ChangeType `json:"operation"`
		ObjectClass string            `json:"objectClass"`
	}
	if json.Unmarshal(m.Data(), &peek) == nil && peek.Operation == domain.OperationList {
		return s.list(ctx, resource, peek.ObjectClass, opID)
	}
	seq, _ := strconv.ParseInt(h.Get("sequence"), 10, 64)
	prev, _ := strconv.ParseInt(h.Get("previousSequence"), 10, 64)
	orderKey := resource + "." + shadowID
	var (
		ord sampleOrder
		rev uint64
	)
	if seq > 0 {
		e, err := s.order.Get(ctx, orderKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &ord); err != nil {
				return fmt.Errorf("sample system: order record of %s: %w", orderKey, err)
			}
		}
		if seq <= ord.Last {
			// Applied before (a redelivery): answer as then, apply nothing.
			a, ok := ord.Answers[opID]
			if !ok {
				a = sampleAnswer{Result: domain.ResultSuccess, Message: "already applied"}
			}
			return s.confirm(ctx, resource, opID, a.Result, a.Message, a.IDs)
		}
		if prev > ord.Last {
			return errTooEarly
		}
	}
	a, err := s.apply(ctx, resource, opID, m.Data())
	if err != nil {
		return err
	}
	if seq > 0 {
		ord.Last = seq
		if ord.Answers == nil {
			ord.Answers = map[string]sampleAnswer{}
		}
		ord.Answers[opID] = a
		ord.Recent = append(ord.Recent, opID)
		for len(ord.Recent) > sampleAnswersKept {
			delete(ord.Answers, ord.Recent[0])
			ord.Recent = ord.Recent[1:]
		}
		b, _ := json.Marshal(ord)
		if rev == 0 {
			_, err = s.order.Create(ctx, orderKey, b)
		} else {
			_, err = s.order.Update(ctx, orderKey, b, rev)
		}
		if err != nil {
			return fmt.Errorf("sample system: order record of %s: %w", orderKey, err)
		}
	}
	return s.confirm(ctx, resource, opID, a.Result, a.Message, a.IDs)
}

// apply carries out one request. It is idempotent: applied twice (a crash before the order
// record was written), it leaves the account as applied once.
func (s *SampleSystem) apply(ctx context.Context, resource, opID string, data []byte) (sampleAnswer, error) {
	var req sampleRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return sampleAnswer{Result: domain.ResultFatalError, Message: "sample system: malformed request: " + err.Error()}, nil
	}
	pid := s.primary(resource, req.ObjectClass)
	if pid == "" {
		pid = "uid"
	}
	switch req.Operation {
	case domain.ChangeAdd:
		uid := SampleUID(opID)
		b, _ := json.Marshal(req.Attributes)
		rev, err := s.accounts.Create(ctx, resource+"."+uid, b)
		if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return sampleAnswer{}, err
		}
		s.wrote(rev)
		return sampleAnswer{Result: domain.ResultSuccess, Message: "created", IDs: map[string][]any{pid: {uid}}}, nil
	case domain.ChangeModify, domain.ChangeDelete:
		uid := firstString(req.PrimaryIdentifiers[pid])
		e, err := s.accounts.Get(ctx, resource+"."+uid)
		if uid == "" || errors.Is(err, jetstream.ErrKeyNotFound) {
			if req.Operation == domain.ChangeDelete {
				return sampleAnswer{Result: domain.ResultHandledError, Message: "not found (already deleted)"}, nil
			}
			return sampleAnswer{Result: domain.ResultFatalError, Message: "not found"}, nil
		}
		if err != nil {
			return sampleAnswer{}, err
		}
		if req.Operation == domain.ChangeDelete {
			if err := s.accounts.Delete(ctx, resource+"."+uid); err != nil {
				return sampleAnswer{}, err
			}
			return sampleAnswer{Result: domain.ResultSuccess, Message: "deleted"}, nil
		}
		var attrs map[string][]any
		_ = json.Unmarshal(e.Value(), &attrs)
		if attrs == nil {
			attrs = map[string][]any{}
		}
		for k, c := range req.Changes {
			vs := attrs[k]
			if c.Replace != nil {
				vs = *c.Replace
			}
			for _, v := range c.Add {
				if !containsValue(vs, v) {
					vs = append(vs, v)
				}
			}
			for _, v := range c.Delete {
				vs = slices.DeleteFunc(vs, func(x any) bool { return sameValue(x, v) })
			}
			if len(vs) == 0 {
				delete(attrs, k)
			} else {
				attrs[k] = vs
			}
		}
		b, _ := json.Marshal(attrs)
		rev, err := s.accounts.Update(ctx, resource+"."+uid, b, e.Revision())
		if err != nil {
			return sampleAnswer{}, err
		}
		s.wrote(rev)
		return sampleAnswer{Result: domain.ResultSuccess, Message: "modified"}, nil
	}
	return sampleAnswer{Result: domain.ResultFatalError, Message: fmt.Sprintf("sample system: unknown operation %q", req.Operation)}, nil
}

// samplePageSize is how many accounts a page of the sample system's listing holds.
const samplePageSize = 500

// list answers a reconciliation run's list request: the resource's accounts, in pages sent with
// the public page command, one at a time (a page is answered before the next is read).
func (s *SampleSystem) list(ctx context.Context, resource, objectClass, runID string) error {
	pid := s.primary(resource, objectClass)
	if pid == "" {
		pid = "uid"
	}
	keys, err := s.accounts.ListKeysFiltered(ctx, resource+".*")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return err
	}
	page := []map[string]any{}
	n := 0
	send := func(last bool) error {
		n++
		body, _ := json.Marshal(map[string]any{"reconciliationId": runID, "page": n, "last": last, "accounts": page})
		page = page[:0]
		return s.command(ctx, resource, "page", body)
	}
	if keys != nil {
		defer func() { _ = keys.Stop() }()
		for k := range keys.Keys() {
			e, err := s.accounts.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			var attrs map[string][]any
			if json.Unmarshal(e.Value(), &attrs) != nil {
				continue // not an account (an edit by hand that is not JSON): not listed
			}
			_, uid, _ := strings.Cut(k, ".")
			page = append(page, map[string]any{"primaryIdentifiers": map[string][]any{pid: {uid}}, "attributes": attrs})
			if len(page) == samplePageSize {
				if err := send(false); err != nil {
					return err
				}
			}
		}
	}
	return send(true)
}

// command sends a public command of the service, retrying while it is unavailable (503).
func (s *SampleSystem) command(ctx context.Context, resource, verb string, body []byte) error {
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		reply, err := s.nc.RequestWithContext(rctx, s.prefix+".cmd."+resource+"."+verb, body)
		cancel()
		code := ""
		if err == nil {
			code = reply.Header.Get("Nats-Service-Error-Code")
		}
		switch {
		case err == nil && code == "":
			return nil
		case err == nil && code != "503":
			return fmt.Errorf("sample system: %s refused: %s %s", verb, code, reply.Header.Get("Nats-Service-Error"))
		case attempt >= 20 || ctx.Err() != nil:
			return fmt.Errorf("sample system: %s: %v %s", verb, err, code)
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
}

// wrote remembers a revision of the accounts bucket this system wrote, so that WatchEdits tells
// its own writes from an edit made outside.
func (s *SampleSystem) wrote(rev uint64) {
	if rev == 0 {
		return
	}
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	if s.own == nil || len(s.own) > 100000 {
		s.own = map[uint64]struct{}{}
	}
	s.own[rev] = struct{}{}
}

func (s *SampleSystem) isOwn(rev uint64) bool {
	s.ownMu.Lock()
	defer s.ownMu.Unlock()
	_, ok := s.own[rev]
	delete(s.own, rev)
	return ok
}

// WatchEdits turns every edit made directly in the accounts bucket (keys <resource>.<uid>, JSON
// attributes: a change made outside shadowbridge) into a change notification of the account, as
// a real target system would send: a put is the account with all its attributes, a delete its
// disappearance. Writes of this system's own are not notified; deletes are (harmless: the
// shadow's delete is on its way, or done). class names the object class and primary identifier
// of a resource's accounts (ok false: not a resource of this system). It runs until ctx ends and
// sees the edits made while it runs (what happened before is reconciliation's to find).
func (s *SampleSystem) WatchEdits(ctx context.Context, class func(resource string) (objectClass, primaryIdentifier string, ok bool)) error {
	w, err := s.accounts.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("sample system: watch: %w", err)
	}
	// Stopped without waiting: nats.go deletes the watch's consumer with a request that, NATS
	// being unreachable at a stop, takes its 5 s timeout (every stop of the app waited for it);
	// the server drops an ordered consumer no one reads anyway.
	defer func() { go func() { _ = w.Stop() }() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil || s.isOwn(e.Revision()) {
				continue
			}
			s.notifyEdit(ctx, e, class)
		}
	}
}

// notifyEdit sends the notification of one edit of the accounts bucket.
func (s *SampleSystem) notifyEdit(ctx context.Context, e jetstream.KeyValueEntry, class func(string) (string, string, bool)) {
	resource, uid, _ := strings.Cut(e.Key(), ".")
	oc, pid, ok := class(resource)
	if !ok {
		return
	}
	body := map[string]any{"requestId": fmt.Sprintf("sample-edit-%d", e.Revision()), "objectClass": oc,
		"primaryIdentifiers": map[string][]any{pid: {uid}}, "observedAt": e.Created().UTC().Format(time.RFC3339Nano)}
	if e.Operation() == jetstream.KeyValuePut {
		var attrs map[string][]any
		if err := json.Unmarshal(e.Value(), &attrs); err != nil {
			s.log.Warn("edited account is not a JSON object of attribute lists; not notified", "key", e.Key(), "err", err)
			return
		}
		body["change"], body["attributes"] = "add", attrs
	} else {
		body["change"] = "delete"
	}
	b, _ := json.Marshal(body)
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		reply, err := s.nc.RequestWithContext(rctx, s.prefix+".cmd."+resource+".notify", b)
		cancel()
		if err == nil && reply.Header.Get("Nats-Service-Error-Code") != "503" {
			if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
				s.log.Warn("edit refused", "key", e.Key(), "code", code, "err", reply.Header.Get("Nats-Service-Error"))
			}
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
}

// SampleUID is the uid the sample system gives the account an add creates: derived from the
// operation id, so that the add applied twice creates one account.
func SampleUID(operationID string) string {
	h := sha256.Sum256([]byte(operationID))
	return "u-" + hex.EncodeToString(h[:6])
}

func sameValue(a, b any) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func containsValue(vs []any, v any) bool {
	return slices.ContainsFunc(vs, func(x any) bool { return sameValue(x, v) })
}

// confirm sends the public confirm command. An operation that is already completed (a redelivered
// request) is fine.
func (s *SampleSystem) confirm(ctx context.Context, resource, opID string, result domain.ResultStatus, msg string, ids map[string][]any) error {
	body, _ := json.Marshal(map[string]any{"operationId": opID, "resultStatus": result, "message": msg, "primaryIdentifiers": ids})
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply, err := s.nc.RequestWithContext(rctx, s.prefix+".cmd."+resource+".confirm", body)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	code := reply.Header.Get("Nats-Service-Error-Code")
	switch code {
	case "":
		return nil
	case "409":
		return nil // already completed: a redelivery
	case "400", "404":
		s.log.Error("confirmation refused", "operation", opID, "code", code, "err", reply.Header.Get("Nats-Service-Error"))
		return nil
	}
	return fmt.Errorf("confirm: %s %s", code, reply.Header.Get("Nats-Service-Error"))
}

func firstString(v []any) string {
	if len(v) == 0 {
		return ""
	}
	switch x := v[0].(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v[0])
}
