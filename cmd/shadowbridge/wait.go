package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// waiter holds serve's start-up while NATS is not there yet (down, or a cluster still forming):
// it retries with backoff instead of exiting, so that a supervisor does not crash-loop the
// service, and answers /healthz (alive) and /readyz (503, saying what it waits for) on the HTTP
// address meanwhile. The service's own HTTP server takes the address over once it runs.
type waiter struct {
	log *slog.Logger
	srv *http.Server
	ln  net.Listener

	mu     sync.Mutex
	reason string
}

// newWaiter starts answering on addr ("" : no HTTP while waiting).
func newWaiter(addr string, log *slog.Logger) (*waiter, error) {
	w := &waiter{log: log, reason: "starting"}
	if addr == "" {
		return w, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { _, _ = rw.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(rw http.ResponseWriter, _ *http.Request) {
		w.mu.Lock()
		reason := w.reason
		w.mu.Unlock()
		http.Error(rw, "not ready: "+reason, http.StatusServiceUnavailable)
	})
	w.ln, w.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = w.srv.Serve(ln) }()
	return w, nil
}

// addr is the address the waiter listens on (for the service to take over), "" if none.
func (w *waiter) addr() string {
	if w == nil || w.ln == nil {
		return ""
	}
	return w.ln.Addr().String()
}

// close stops answering (the service is about to listen on the same address).
func (w *waiter) close() {
	if w != nil && w.srv != nil {
		_ = w.srv.Close()
		w.srv = nil
	}
}

// waitBackoff bounds the pause between two tries.
const waitBackoff = 15 * time.Second

// until runs try until it succeeds, fails for good (transient says which errors are worth
// waiting out) or ctx ends, with backoff from 250 ms to waitBackoff, logging each failure
// (what, the error, the next try).
func until[T any](ctx context.Context, w *waiter, what string, transient func(error) bool, try func() (T, error)) (T, error) {
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := try()
		if err == nil || w == nil || !transient(err) {
			return v, err
		}
		w.mu.Lock()
		w.reason = what + ": " + err.Error()
		w.mu.Unlock()
		w.log.Warn("waiting for NATS", "step", what, "attempt", attempt, "err", err, "retryIn", pause)
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(pause):
		}
		pause = min(2*pause, waitBackoff)
	}
}

// anyError: every connection error is worth waiting out (a server not up yet, a cluster still
// electing, a TLS or auth setting an operator is fixing); the log says which.
func anyError(error) bool { return true }

// startTransient tells the errors of starting the service that NATS itself will clear: JetStream
// not up or still electing a leader, a timeout, no connection. A configuration error (an old
// server, replicas that do not match) is not: serve exits with it.
func startTransient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, domain.CategoryConfiguration), errors.Is(err, domain.CategorySecurity):
		return false
	case errors.As(err, &apiErr):
		return apiErr.Code == http.StatusServiceUnavailable
	}
	return errors.Is(err, eventstore.ErrUnavailable) || errors.Is(err, domain.CategoryCommunication) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed)
}
