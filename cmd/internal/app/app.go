// Package app composes shadowbridge: event store, command service, projections and bridge on one
// NATS connection. `shadowbridge dev`, `serve`, the integration tests and the benchmarks all start
// it the same way.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"shadowbridge/bridge"
	"shadowbridge/cmd/internal/api"
	"shadowbridge/cmd/internal/metrics"
	"shadowbridge/cmd/internal/natsapi"
	"shadowbridge/cmd/internal/service"
	"shadowbridge/domain"
	"shadowbridge/eventstore"
	"shadowbridge/projections"
)

// Options tune what Start runs.
type Options struct {
	// Memory keeps streams in memory (tests and benchmarks only).
	Memory bool
	// NoDispatcher and NoSample leave those parts out (for tests that drive them by hand).
	NoDispatcher bool
	NoSample     bool
	// NoSampleEdits leaves out the sample target's notifications of edits made in its bucket
	// (tests of reconciliation, which must find those edits by listing).
	NoSampleEdits bool
	// NoProjector runs without the projector (a service killed between append and projection).
	NoProjector bool
	// SweepInterval is how often every resource's due work is refreshed, in case a timer was lost
	// (default 1m; negative: never).
	SweepInterval time.Duration
	// ProbeInterval is how often a resource that is down is probed (default 1s; negative:
	// never). Targets keep their own reconnection backoff, so a probe during it costs nothing.
	ProbeInterval time.Duration
	// SummaryInterval is how often a resource that is not up is summarized in the log (its
	// status and the shadows waiting on it; default 1m; negative: never).
	SummaryInterval time.Duration
	// TrendInterval is how often the dashboard's sampled charts (retry backlog, pending
	// operations, projection lag) take a sample (default 10s, a day kept; negative: never).
	TrendInterval time.Duration
	// TracerProvider receives the spans of commands, attempts and confirmations (default: none
	// recorded; W3C traceparents still travel with the operations).
	TracerProvider trace.TracerProvider
}

// App is a running shadowbridge.
type App struct {
	Store     *eventstore.Store
	Service   *service.Service
	Projector *projections.Projector
	Pending   *projections.PendingIndex
	Dashboard *projections.Dashboard
	Trend     *projections.Trend // the sampled gauges of the dashboard's charts
	Micro     *natsapi.Service
	metrics   *metrics.Set // this app's own registry, served at /metrics
	http      HTTPConfig
	feed      dashboardFeed
	streams   chan struct{} // one token per open event stream (MaxStreams)
	targets   map[string]bridge.Target
	nc        *nats.Conn
	kv        jetstream.KeyValue // the projection

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	log     *slog.Logger
	runMu   sync.Mutex
	running map[string]int // components whose Run has not returned, by name
}

// Start wires and starts everything on nc. Stop it with Close.
func Start(ctx context.Context, nc *nats.Conn, cfg Config, o Options, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	catalog, err := cfg.Catalog()
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	store, err := openStore(ctx, nc, cfg, o, m, log)
	if err != nil {
		return nil, err
	}
	replicas := store.Config().Replicas
	pcfg := projections.DefaultConfig()
	pcfg.Memory, pcfg.Replicas = o.Memory, replicas
	proj, err := projections.NewProjector(ctx, store.JetStream(), store, pcfg, log)
	if err != nil {
		return nil, err
	}
	kv, err := projections.OpenBucket(ctx, store.JetStream(), pcfg)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &App{Store: store, Projector: proj, nc: nc, kv: kv, http: cfg.HTTP, streams: make(chan struct{}, MaxStreams), ctx: runCtx, cancel: cancel, log: log, targets: map[string]bridge.Target{},
		metrics: m}
	fail := func(err error) (*App, error) { a.Close(); return nil, err }
	if a.Pending, a.Dashboard, err = projections.Watch(runCtx, kv, log); err != nil {
		return fail(err)
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	tracer := o.TracerProvider.Tracer("shadowbridge")
	recon, err := openSeenMarks(ctx, store, replicas, o.Memory)
	if err != nil {
		return fail(err)
	}
	a.Service = service.New(store, a.Pending, catalog, log, service.WithMetrics(a.metrics), service.WithTracer(tracer),
		service.WithReconciliation(lister{a}, projectionKeys{store, kv.Bucket()}, recon))
	a.registerGauges()
	if a.Micro, err = natsapi.Serve(runCtx, nc, a.Service, natsapi.ServeOptions{Prefix: cfg.Prefix, Metrics: a.metrics, Tracer: tracer, Logger: log}); err != nil {
		return fail(err)
	}
	if !o.NoProjector {
		a.goRun("projector", proj.Run)
	}
	if err := a.startTimers(ctx, cfg, catalog); err != nil {
		return fail(err)
	}
	needSample, err := a.startTargets(ctx, cfg, tracer)
	if err != nil {
		return fail(err)
	}
	if !o.NoDispatcher {
		d := bridge.NewDispatcher(store, a.Service, a.targets, log)
		d.Gate = a.Service
		d.Tracer = tracer
		a.goRun("dispatcher", d.Run)
	}
	a.startBackground(o, catalog)
	if needSample && !o.NoSample {
		if err := a.startSample(ctx, nc, cfg.Prefix, catalog, o.NoSampleEdits, log); err != nil {
			return fail(err)
		}
	}
	return a, nil
}

// openStore opens (or creates) the event store cfg describes; records it cannot read are logged
// and counted in m.
func openStore(ctx context.Context, nc *nats.Conn, cfg Config, o Options, m *metrics.Set, log *slog.Logger) (*eventstore.Store, error) {
	scfg := eventstore.DefaultConfig()
	scfg.Prefix, scfg.Memory = cfg.Prefix, o.Memory
	if cfg.NATS.Replicas > 0 {
		scfg.Replicas = cfg.NATS.Replicas
	}
	if cfg.NATS.DuplicateWindow > 0 {
		scfg.DuplicateWindow = time.Duration(cfg.NATS.DuplicateWindow)
	}
	scfg.Skipped = (&skipReporter{log: log, count: m.RecordsSkipped}).report
	return eventstore.Open(ctx, nc, scfg)
}

// startTimers starts the timer armer and the handler of fired timers, and arms each resource's
// repeating reconciliation (or cancels it).
func (a *App) startTimers(ctx context.Context, cfg Config, catalog domain.Catalog) error {
	store, log := a.Store, a.log
	a.goRun("timer-armer", func(ctx context.Context) error {
		// Timers follow the log: each shadow's TimerSet/TimerCleared are applied in log order
		// (one shadow, one worker), so concurrent decisions cannot leave an older schedule in
		// place of a newer one.
		return store.SubscribeSharded(ctx, "PROV_TIMER_ARMER", eventstore.SubscribeOptions{Workers: eventstore.ArmerWorkers, Logger: log},
			func(ctx context.Context, r *eventstore.Record) error {
				return store.ApplyTimers(ctx, r, func(what string) { a.metrics.Timers.Inc(what) })
			})
	})
	a.goRun("timers", func(ctx context.Context) error {
		return store.SubscribeSharded(ctx, "PROV_TIMERS", eventstore.SubscribeOptions{Filter: cfg.Prefix + ".due.>", Workers: eventstore.FiringWorkers, Logger: log},
			func(ctx context.Context, r *eventstore.Record) error { return a.timerFired(ctx, catalog, r) })
	})
	for _, r := range cfg.Resources {
		every := time.Duration(0)
		if r.Reconcile != nil {
			every = time.Duration(r.Reconcile.Every)
		}
		if err := store.EnsureRepeatingTimer(ctx, r.Name, reconcileTimer, every); err != nil {
			return fmt.Errorf("resource %s: reconcile schedule: %w", r.Name, err)
		}
	}
	return nil
}

// timerFired handles a fired timer: a shadow's refreshes it (the domain retries what is due, or
// ends what has no attempts left, and re-arms for the next due work, also when the firing was a
// stale schedule that found nothing due: domain.Refresh.TimerFired); a resource's starts (or
// joins) a reconciliation run.
func (a *App) timerFired(ctx context.Context, catalog domain.Catalog, r *eventstore.Record) error {
	if _, err := catalog.Lookup(r.Resource); err != nil || r.ShadowID == "" {
		return nil // a timer of a resource no longer configured
	}
	if r.ShadowID == reconcileTimer {
		a.metrics.Timers.Inc("reconcile")
		_, err := a.Service.Reconcile(ctx, r.Resource, "") // a run going is joined
		return err
	}
	a.metrics.Timers.Inc("fired")
	_, err := a.Service.TimerFired(ctx, r.Resource, r.ShadowID)
	if errors.Is(err, domain.CategoryNotFound) {
		return nil
	}
	return err
}

// startTargets makes each resource's target (and starts the receivers of its confirmations);
// needSample reports a resource served by the sample target system.
func (a *App) startTargets(ctx context.Context, cfg Config, tracer trace.Tracer) (needSample bool, err error) {
	for _, r := range cfg.Resources {
		var t bridge.Target
		switch {
		case r.Target.Sample != nil:
			needSample = true
			t, err = bridge.NewSampleTarget(ctx, a.Store.JetStream(), cfg.Prefix, r.Name)
		case r.Target.NATS != nil:
			t, err = bridge.NewNATSTarget(ctx, a.Store.JetStream(), r.Target.NATS.Subject, "PROV_TARGET_"+r.Name, r.Transformation)
		case r.Target.AMQP091 != nil:
			t, err = a.amqp091Target(r, tracer)
		case r.Target.AMQP != nil:
			t, err = a.amqpTarget(r, a.log, tracer)
		}
		if err != nil {
			return false, fmt.Errorf("resource %s: target: %w", r.Name, err)
		}
		a.targets[r.Name] = t
	}
	return needSample, nil
}

// amqp091Target makes an AMQP 0-9-1 target and, when the resource names a confirmation queue,
// starts its receiver.
func (a *App) amqp091Target(r ResourceConfig, tracer trace.Tracer) (bridge.Target, error) {
	c := r.Target.AMQP091
	o := bridge.AMQP091Options{URL: c.URL, Queue: c.Queue, ConfirmationQueue: c.ConfirmationQueue,
		Transformation: r.Transformation, MaxBackoff: time.Duration(c.MaxBackoff), Logger: a.log.WithGroup("amqp091"), Tracer: tracer, Refused: a.metrics.ConfirmationsRefused}
	t, err := bridge.NewAMQP091Target(o)
	if err != nil || o.ConfirmationQueue == "" {
		return t, err
	}
	rcv, err := bridge.NewAMQP091ConfirmationReceiver(o, r.Name, confirmer{a.Service})
	if err != nil {
		return nil, err
	}
	a.goRun("confirmations-"+r.Name, rcv.Run)
	return t, nil
}

// startBackground starts the periodic work o asks for: the sweep, the probe of resources that
// are down, the summary line and the dashboard's trend.
func (a *App) startBackground(o Options, catalog domain.Catalog) {
	if o.SweepInterval == 0 {
		o.SweepInterval = time.Minute
	}
	if o.SweepInterval > 0 {
		a.goRun("sweep", func(ctx context.Context) error { return a.sweep(ctx, o.SweepInterval, catalog) })
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = time.Second
	}
	if o.ProbeInterval > 0 {
		a.goRun("probe", func(ctx context.Context) error { return a.probe(ctx, o.ProbeInterval) })
	}
	if o.SummaryInterval == 0 {
		o.SummaryInterval = time.Minute
	}
	if o.SummaryInterval > 0 {
		a.goRun("summary", func(ctx context.Context) error { return a.summarize(ctx, o.SummaryInterval) })
	}
	if o.TrendInterval == 0 {
		o.TrendInterval = 10 * time.Second
	}
	a.Trend = projections.NewTrend(int(24 * time.Hour / max(o.TrendInterval, time.Second)))
	if o.TrendInterval > 0 {
		a.goRun("trend", func(ctx context.Context) error {
			sample := func() {
				counts, err := a.Dashboard.Counts(ctx, time.Now())
				if err != nil {
					return
				}
				lag, _ := a.Projector.Lag(ctx, a.Store.Config().Stream)
				a.Trend.Record(time.Now(), counts, lag)
			}
			sample()
			return ticking(ctx, o.TrendInterval, sample)
		})
	}
}

var _ bridge.Outcomes = (*service.Service)(nil)

// confirmer adapts the command service to the bridge's Confirmer.
type confirmer struct{ s *service.Service }

// Confirm reads the AMQP confirmation's body with the NATS confirm command's decoder
// (api.Confirmation) and stores it: both transports' confirmations meet the same rules and become
// the same service.ConfirmRequest.
func (c confirmer) Confirm(ctx context.Context, resource string, b bridge.Confirmation) error {
	req, err := api.Confirmation(resource, b.OperationID, b.Body)
	if err != nil {
		return fmt.Errorf("%w: %w", bridge.ErrMalformed, err)
	}
	_, err = c.s.Confirm(ctx, req)
	return err
}

// amqpTarget is an AMQP 1.0 resource's target, with the receivers of its confirmation (and
// reconciliation page) address and its notification address running.
func (a *App) amqpTarget(r ResourceConfig, log *slog.Logger, tracer trace.Tracer) (bridge.Target, error) {
	o, err := amqpOptions(r, log)
	if err != nil {
		return nil, err
	}
	o.Tracer, o.Refused = tracer, a.metrics.ConfirmationsRefused
	t, err := bridge.NewAMQPTarget(o)
	if err != nil {
		return nil, err
	}
	if o.ConfirmationAddress != "" {
		rcv, err := bridge.NewConfirmationReceiver(o, r.Name, confirmer{a.Service})
		if err != nil {
			return nil, err
		}
		rcv.Pages = pager{a.Service}
		a.goRun("confirmations-"+r.Name, rcv.Run)
	}
	if o.NotificationAddress != "" {
		rcv, err := bridge.NewNotificationReceiver(o, r.Name, notifier{a.Service})
		if err != nil {
			return nil, err
		}
		a.goRun("notifications-"+r.Name, rcv.Run)
	}
	return t, nil
}

// startSample runs the built-in sample target system for the resources that use it, and (unless
// noEdits) its notifications of edits made by hand in its bucket.
func (a *App) startSample(ctx context.Context, nc *nats.Conn, prefix string, catalog domain.Catalog, noEdits bool, log *slog.Logger) error {
	primary := func(resource, class string) string {
		if r, ok := catalog[resource]; ok {
			if oc, ok := r.ObjectClass(class); ok {
				return oc.PrimaryIdentifier
			}
		}
		return ""
	}
	sys, err := bridge.NewSampleSystem(ctx, nc, prefix, primary, log)
	if err != nil {
		return err
	}
	a.goRun("sample", sys.Run)
	if noEdits {
		return nil
	}
	a.goRun("sample-edits", func(ctx context.Context) error {
		return sys.WatchEdits(ctx, func(resource string) (string, string, bool) {
			r, ok := catalog[resource]
			if !ok || len(r.ObjectClasses()) == 0 {
				return "", "", false
			}
			oc := r.ObjectClasses()[0]
			pid := oc.PrimaryIdentifier
			if pid == "" {
				pid = "uid"
			}
			return oc.Name, pid, true
		})
	})
	return nil
}

// reconcileTimer names a resource's reconciliation schedule (prov.timer.<resource>.reconciliation).
const reconcileTimer = "reconciliation"

// pager adapts the command service to the bridge's Pager.
type pager struct{ s *service.Service }

func (p pager) Page(ctx context.Context, resource string, body []byte) error {
	b, err := api.Decode[api.PageBody](body)
	if err != nil {
		return err
	}
	page, err := b.ListingPage(resource)
	if err != nil {
		return err
	}
	_, err = p.s.ApplyPage(ctx, page)
	return err
}

// notifier adapts the command service to the bridge's Notifier: the body is decoded as the
// notify command's, and a message's id is its request id unless the body names one.
type notifier struct{ s *service.Service }

func (n notifier) Notify(ctx context.Context, resource, requestID string, body []byte) error {
	b, err := api.Decode[api.NotifyBody](body)
	if err != nil {
		return err
	}
	if b.RequestID == "" {
		b.RequestID = requestID
	}
	note, err := b.Notification(resource)
	if err != nil {
		return err
	}
	_, err = n.s.Notify(ctx, note)
	return err
}

func amqpOptions(r ResourceConfig, log *slog.Logger) (bridge.AMQPOptions, error) {
	a := r.Target.AMQP
	o := bridge.AMQPOptions{URL: a.URL, URLs: a.URLs, Address: a.Address, Username: a.Username, Password: a.Password,
		ConfirmationAddress: a.ConfirmationAddress, NotificationAddress: a.NotificationAddress, Transformation: r.Transformation, Logger: log.WithGroup("amqp"),
		MaxBackoff: time.Duration(a.MaxBackoff)}
	if a.TLS.CA != "" || a.TLS.Cert != "" {
		tc, err := tlsConfig(a.TLS)
		if err != nil {
			return o, fmt.Errorf("resource %s: target.amqp.tls: %w", r.Name, err)
		}
		o.TLS = tc
	}
	return o, nil
}

func (a *App) goRun(name string, fn func(context.Context) error) {
	a.runMu.Lock()
	if a.running == nil {
		a.running = map[string]int{}
	}
	a.running[name]++
	a.runMu.Unlock()
	a.wg.Go(func() {
		defer func() {
			a.runMu.Lock()
			if a.running[name]--; a.running[name] == 0 {
				delete(a.running, name)
			}
			a.runMu.Unlock()
		}()
		// Labelled, with every goroutine it starts: a goroutine dump (a stop that takes too
		// long prints one) says which component a stack belongs to.
		pprof.Do(a.ctx, pprof.Labels(ComponentLabel, name), func(ctx context.Context) {
			supervise(ctx, name, fn, a.log, a.metrics.ComponentRestarts.Inc, restartBackoff)
		})
	})
}

// supervise runs fn until ctx ends, starting it again (after a pause that doubles from first up
// to a minute, and starts over after a run that lasted longer than that) whenever it ends first:
// a component must never stop for good while the process lives on and says it is ready (a
// dispatcher whose consumer could not be made during an outage would leave every operation
// pending until a restart). Each restart is logged and counted.
func supervise(ctx context.Context, name string, fn func(context.Context) error, log *slog.Logger, restarted func(...string), first time.Duration) {
	pause := first
	for {
		began := time.Now()
		err := fn(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > maxRestartPause {
			pause = first
		}
		log.Error("component ended, starting it again", "component", name, "err", err, "in", pause)
		restarted(name)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, maxRestartPause)
	}
}

// restartBackoff is supervise's first pause; maxRestartPause its longest.
const (
	restartBackoff  = time.Second
	maxRestartPause = time.Minute
)

// ComponentLabel is the pprof label naming the component a goroutine runs for (see Running).
const ComponentLabel = "component"

// Running names the components still running, sorted: what a stop that takes too long waits for.
// Safe for concurrent use.
func (a *App) Running() []string {
	a.runMu.Lock()
	defer a.runMu.Unlock()
	return slices.Sorted(maps.Keys(a.running))
}

// sweep refreshes every resource's shadows with unfinished work now and then: cheap insurance
// against a timer lost between a stored decision and its schedule.
func (a *App) sweep(ctx context.Context, every time.Duration, catalog domain.Catalog) error {
	return ticking(ctx, every, func() {
		for name := range catalog {
			if n, err := a.Service.Refresh(ctx, name, "", false); err != nil {
				a.log.Warn("sweep failed", "resource", name, "err", err)
			} else if n > 0 {
				a.log.Info("sweep refreshed shadows", "resource", name, "shadows", n)
			}
		}
	})
}

// ticking calls fn every interval until ctx ends.
func ticking(ctx context.Context, every time.Duration, fn func()) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn()
		}
	}
}

// probe checks now and then whether a resource that is down is reachable again, so that its
// postponed operations are retried when it comes back (retryOnRecovery) rather than when their
// timers fire: nothing else would notice, since nothing is sent to a resource that is down.
func (a *App) probe(ctx context.Context, every time.Duration) error {
	return ticking(ctx, every, func() {
		for name, target := range a.targets {
			p, ok := target.(bridge.Prober)
			if !ok {
				continue
			}
			st, err := a.Service.ResourceState(ctx, name)
			if err != nil || st.Availability == domain.AvailabilityUp {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = p.Probe(pctx)
			cancel()
			if err == nil {
				a.Service.Reachable(ctx, name) // logs the change
			}
		}
	})
}

// summarize logs, every interval, each resource that is not up: its status, since when, and
// how many shadows wait on it. In an outage this replaces a line per operation.
func (a *App) summarize(ctx context.Context, every time.Duration) error {
	return ticking(ctx, every, func() {
		for _, name := range slices.Sorted(maps.Keys(a.Service.Catalog())) {
			st, err := a.Service.ResourceState(ctx, name)
			if err != nil || st.Availability == domain.AvailabilityUp {
				continue
			}
			var since time.Time
			if n := len(st.Changes); n > 0 {
				since = st.Changes[n-1].Time
			}
			a.log.Warn("resource still unavailable", "resource", name, "status", st.Availability, "since", since, "pendingShadows", a.Pending.Count(name))
		}
	})
}

// commandDrain bounds how long Close lets the commands in flight finish before it stops the
// consumers regardless (the whole stop has 20 s in serve).
const commandDrain = 8 * time.Second

// Close stops every component and waits for them.
//
// The order makes a graceful stop: the micro service leaves the queue group first (new requests
// go to the other instances), the requests in flight finish and are answered (for commandDrain at
// most: past it the consumers stop first, releasing any lock a command waits for), then the
// consumers stop, leaving unacknowledged whatever they had not stored (another instance gets it).
func (a *App) Close() {
	start := time.Now()
	if a.Micro != nil {
		_ = a.Micro.Stop()
	}
	if a.Service != nil {
		done := make(chan struct{})
		go func() { a.Service.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(commandDrain):
			// A command in flight can wait for a shadow's or a resource's lock held by a
			// consumer whose JetStream calls hang (a cluster node restarting). Stop the
			// consumers: what they have not stored stays unacknowledged and is redone by the
			// next instance; the lock is released and the command answers.
			a.log.Warn("commands still in flight; stopping the consumers first", "after", commandDrain)
			a.cancel()
			<-done
		}
	}
	commands := time.Since(start)
	a.cancel()
	a.wg.Wait()
	if a.Service != nil {
		a.Service.Close() // what the consumers started meanwhile
	}
	components := time.Since(start) - commands
	var wg sync.WaitGroup
	for _, t := range a.targets {
		if t != nil {
			wg.Go(func() { _ = t.Close() }) // each bounded by its close timeout
		}
	}
	wg.Wait()
	// Where a slow stop spent its time, for the operator.
	took, level := time.Since(start), slog.LevelInfo
	if took > slowStop {
		level = slog.LevelWarn
	}
	a.log.Log(context.Background(), level, "stopped", "took", took, "commands", commands,
		"components", components, "targets", took-commands-components)
}

// slowStop is how long a stop takes before its summary is logged as a warning.
const slowStop = 5 * time.Second

// skipReporter counts the records readers pass over because they cannot be decoded and logs
// each one once (a record stays in the log: every load of its shadow would log it again).
type skipReporter struct {
	log   *slog.Logger
	count *metrics.CounterVec
	mu    sync.Mutex
	seen  map[uint64]struct{}
}

func (r *skipReporter) report(reader, subject string, seq uint64, err error) {
	r.count.Inc(reader)
	r.mu.Lock()
	_, logged := r.seen[seq]
	if !logged {
		if r.seen == nil || len(r.seen) >= 4096 {
			r.seen = map[uint64]struct{}{}
		}
		r.seen[seq] = struct{}{}
	}
	r.mu.Unlock()
	if !logged {
		r.log.Warn("record skipped: it cannot be decoded (not written by shadowbridge); the shadow or resource goes on from its last good commit",
			"subject", subject, "seq", seq, "reader", reader, "err", err)
	}
}
