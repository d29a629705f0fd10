package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
)

// The sample target system: a little account store in KV that consumes requests from a work
// queue and confirms them over NATS with the public confirm command, exactly as a real target
// system would. It assigns the primary identifier on add.
const (
	SampleStream  = "PROV_SAMPLE"
	SampleBucket  = "PROV_SAMPLE_ACCOUNTS"
	sampleDurable = "PROV_SAMPLE_SYSTEM"
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
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
	primary  func(resource, objectClass string) string
	log      *slog.Logger
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
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SampleBucket, History: 1, Description: "accounts of the sample target system"})
	if err != nil {
		return nil, fmt.Errorf("sample system: bucket: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	return &SampleSystem{nc: nc, js: js, prefix: prefix, accounts: kv, primary: primary, log: log.WithGroup("sample")}, nil
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
		Durable: sampleDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1024,
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
	it, err := cons.Messages()
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

func (s *SampleSystem) handle(ctx context.Context, m jetstream.Msg) error {
	resource, opID := m.Headers().Get("resource"), m.Headers().Get("operationId")
	var req sampleRequest
	dec := json.NewDecoder(bytesReader(m.Data()))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		return s.confirm(ctx, resource, opID, domain.ResultFatalError, "sample system: malformed request: "+err.Error(), nil)
	}
	pid := s.primary(resource, req.ObjectClass)
	if pid == "" {
		pid = "uid"
	}
	switch req.Operation {
	case domain.ChangeAdd:
		uid := newUID()
		b, _ := json.Marshal(req.Attributes)
		if _, err := s.accounts.Create(ctx, resource+"."+uid, b); err != nil {
			return err
		}
		return s.confirm(ctx, resource, opID, domain.ResultSuccess, "created", map[string][]any{pid: {uid}})
	case domain.ChangeModify, domain.ChangeDelete:
		uid := firstString(req.PrimaryIdentifiers[pid])
		e, err := s.accounts.Get(ctx, resource+"."+uid)
		if uid == "" || errors.Is(err, jetstream.ErrKeyNotFound) {
			if req.Operation == domain.ChangeDelete {
				return s.confirm(ctx, resource, opID, domain.ResultHandledError, "not found (already deleted)", nil)
			}
			return s.confirm(ctx, resource, opID, domain.ResultFatalError, "not found", nil)
		}
		if err != nil {
			return err
		}
		if req.Operation == domain.ChangeDelete {
			if err := s.accounts.Delete(ctx, resource+"."+uid); err != nil {
				return err
			}
			return s.confirm(ctx, resource, opID, domain.ResultSuccess, "deleted", nil)
		}
		var attrs map[string][]any
		_ = json.Unmarshal(e.Value(), &attrs)
		for k, c := range req.Changes {
			if c.Replace != nil {
				attrs[k] = *c.Replace
			}
			attrs[k] = append(attrs[k], c.Add...)
		}
		b, _ := json.Marshal(attrs)
		if _, err := s.accounts.Update(ctx, resource+"."+uid, b, e.Revision()); err != nil {
			return err
		}
		return s.confirm(ctx, resource, opID, domain.ResultSuccess, "modified", nil)
	}
	return s.confirm(ctx, resource, opID, domain.ResultFatalError, fmt.Sprintf("sample system: unknown operation %q", req.Operation), nil)
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

func newUID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "u-" + hex.EncodeToString(b[:])
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
