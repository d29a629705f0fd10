package natsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// The service answers the micro discovery protocol ($SRV.PING, $SRV.INFO, $SRV.STATS) itself
// rather than through micro.AddService: micro counts a request, its time and its error when the
// endpoint's handler returns, and ours return at once, handing the request to a worker. Its
// stats would show every request as an instant success. Here a request is counted when its reply
// is sent, on the endpoint of its verb, so `nats micro stats shadowbridge` shows each verb with
// its real errors and processing time. The JSON is micro's own types.

// Service is one instance of the `shadowbridge` micro service. Its methods are safe for
// concurrent use.
type Service struct {
	id      string
	name    string
	desc    string
	meta    map[string]string
	queue   string
	nc      *nats.Conn
	reqSubs []*nats.Subscription
	srvSubs []*nats.Subscription

	mu        sync.Mutex
	started   time.Time
	endpoints []*endpoint          // in the order Info lists them
	byName    map[string]*endpoint // a request's kindOf name -> its endpoint
	stopped   bool
}

// endpoint is one verb or query as discovery shows it. The subscriptions are per kind
// (<prefix>.cmd.> and <prefix>.query.>): a subject no verb names still gets a 404 that says what
// exists, counted on the "unknown-command" or "unknown-query" endpoint.
type endpoint struct {
	info  micro.EndpointInfo
	stats micro.EndpointStats
}

func newService(nc *nats.Conn, prefix, queue string) *Service {
	s := &Service{
		id: nuid.Next(), name: "shadowbridge", queue: queue, nc: nc,
		desc:    "event-sourced provisioning: commands and queries",
		meta:    map[string]string{"prefix": prefix},
		started: time.Now().UTC(),
		byName:  map[string]*endpoint{},
	}
	add := func(key, name, subject, kind string) {
		e := &endpoint{info: micro.EndpointInfo{Name: name, Subject: subject, QueueGroup: queue, Metadata: map[string]string{"kind": kind}}}
		e.stats = micro.EndpointStats{Name: name, Subject: subject, QueueGroup: queue}
		s.endpoints = append(s.endpoints, e)
		s.byName[key] = e
	}
	for _, v := range CommandVerbs {
		add(commandKey(v), v, prefix+".cmd.*."+v, "command")
	}
	for _, q := range QueryNames {
		add(queryKey(q), q, prefix+".query."+q, "query")
	}
	add(commandKey("unknown"), "unknown-command", prefix+".cmd.>", "command")
	add(queryKey("unknown"), "unknown-query", prefix+".query.>", "query")
	return s
}

func commandKey(verb string) string { return "cmd." + verb }
func queryKey(name string) string   { return "query." + name }

// record counts one answered request on its endpoint, as micro would have: elapsed from its
// arrival to its reply, and an error as "code:message".
func (s *Service) record(subject string, elapsed time.Duration, code int, err error) {
	name, query := kindOf(subject)
	key := commandKey(name)
	if query {
		key = queryKey(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byName[key]
	e.stats.NumRequests++
	e.stats.ProcessingTime += elapsed
	e.stats.AverageProcessingTime = e.stats.ProcessingTime / time.Duration(e.stats.NumRequests)
	if err != nil {
		e.stats.NumErrors++
		e.stats.LastError = fmt.Sprintf("%d:%s", code, err)
	}
}

// Info is what $SRV.INFO answers: the service and one endpoint per verb and query.
func (s *Service) Info() micro.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: s.desc}
	for _, e := range s.endpoints {
		i := e.info
		i.Metadata = maps.Clone(i.Metadata)
		out.Endpoints = append(out.Endpoints, i)
	}
	return out
}

// Stats is what $SRV.STATS answers: each endpoint's requests, errors and processing time since
// the start or the last Reset.
func (s *Service) Stats() micro.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started, Endpoints: []*micro.EndpointStats{}}
	for _, e := range s.endpoints {
		st := e.stats
		out.Endpoints = append(out.Endpoints, &st)
	}
	return out
}

// Reset zeroes the stats.
func (s *Service) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.endpoints {
		e.stats = micro.EndpointStats{Name: e.stats.Name, Subject: e.stats.Subject, QueueGroup: e.stats.QueueGroup}
	}
	s.started = time.Now().UTC()
}

// identity must be called with mu held.
func (s *Service) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: s.name, ID: s.id, Version: Version, Metadata: maps.Clone(s.meta)}
}

// subscribeDiscovery answers PING, INFO and STATS on all three of micro's subjects for each:
// any service, this service's name, and this instance's id.
func (s *Service) subscribeDiscovery() error {
	for verb, answer := range map[micro.Verb]func() any{
		micro.PingVerb: func() any {
			return micro.Ping{ServiceIdentity: s.lockedIdentity(), Type: micro.PingResponseType}
		},
		micro.InfoVerb:  func() any { return s.Info() },
		micro.StatsVerb: func() any { return s.Stats() },
	} {
		for _, who := range [][2]string{{"", ""}, {s.name, ""}, {s.name, s.id}} {
			subject, err := micro.ControlSubject(verb, who[0], who[1])
			if err != nil {
				return err
			}
			sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
				b, _ := json.Marshal(answer())
				_ = m.Respond(b)
			})
			if err != nil {
				return err
			}
			s.srvSubs = append(s.srvSubs, sub)
		}
	}
	return nil
}

func (s *Service) lockedIdentity() micro.ServiceIdentity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity()
}

// Stop drains the service's subscriptions: no new request is taken (another instance of the
// queue group takes it), and discovery no longer lists this instance. Requests already handed to
// workers are answered; the service.Service's Close waits for them. Idempotent.
func (s *Service) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	var errs []error
	for _, sub := range append(append([]*nats.Subscription{}, s.reqSubs...), s.srvSubs...) {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("service: drain %s: %w", sub.Subject, err))
		}
	}
	return errors.Join(errs...)
}
