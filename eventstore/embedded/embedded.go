// Package embedded runs a nats-server with JetStream inside the process, for `shadowbridge dev`
// and for tests. Production uses an external NATS (cluster); see deployments/nats.
package embedded

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded server.
type Options struct {
	// Listen is host:port; port 0 picks a free port (-1 is accepted too).
	Listen string
	// StoreDir holds JetStream's file storage; the state survives restarts with the same dir.
	StoreDir string
	// Username and Password, when set, require clients to authenticate.
	Username, Password string
	// MaxPayload in bytes (default 8 MiB: large enough that oversized commands reach the service
	// and get a clear error instead of a client-side refusal).
	MaxPayload int32
}

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 8 << 20
	}
	opts := &server.Options{
		ServerName: "shadowbridge-dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		MaxPayload: o.MaxPayload,
		NoSigs:     true,
		NoLog:      true,
		Username:   o.Username,
		Password:   o.Password,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 10s on %s", o.Listen)
	}
	return s, nil
}
