// Package embedded runs a nats-server with JetStream inside the process, for `shadowbridge dev`
// and for tests. Production uses an external NATS (cluster); see deployments/nats.
package embedded

import (
	"errors"
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
	// One server at a time: StoreDir+".lock" is locked while it runs (ErrDirInUse otherwise).
	StoreDir string
	// Username and Password, when set, require clients to authenticate.
	Username, Password string
	// Users, when set, are the server's users (each with its permissions); NoAuthUser names the
	// one a client that presents no credentials is taken for.
	Users      []*server.User `json:"-"`
	NoAuthUser string         `json:",omitempty"`
	// Cluster, when Cluster.Listen is set, makes the server a node of a JetStream cluster:
	// ServerName must be unique among the nodes, Routes lists every node's cluster address
	// (its own included is fine).
	ServerName string
	Cluster    ClusterOptions
	// MaxPayload in bytes (default 8 MiB: large enough that oversized commands reach the service
	// and get a clear error instead of a client-side refusal).
	MaxPayload int32
	// DiskCheck is how often the storage limit follows the room on StoreDir's disk (default
	// 10s): writes refused on a full disk are accepted again once there is room, no restart.
	DiskCheck time.Duration
}

// ClusterOptions make a server a cluster node.
type ClusterOptions struct {
	Name   string // the cluster's name, the same on every node
	Listen string // host:port for routes
	Routes []string
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
	if o.DiskCheck <= 0 {
		o.DiskCheck = 10 * time.Second
	}
	if port != server.RANDOM_PORT {
		// Fail at once on a busy port rather than after the 10 s readiness wait.
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
		l.Close()
	}
	release := func() {}
	if o.StoreDir != "" {
		if release, err = lockDir(o.StoreDir); err != nil {
			return nil, err
		}
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
		Users:      o.Users,
		NoAuthUser: o.NoAuthUser,
	}
	if o.ServerName != "" {
		opts.ServerName = o.ServerName
	}
	sizeStore := false
	if free, ok := diskFree(o.StoreDir); ok && o.StoreDir != "" {
		// Explicit, so that it can be raised later (see watchDisk).
		opts.JetStreamMaxStore, sizeStore = storeLimit(dirSize(o.StoreDir), free), true
	}
	if o.Cluster.Listen != "" {
		h, p, err := net.SplitHostPort(o.Cluster.Listen)
		if err != nil {
			release()
			return nil, fmt.Errorf("embedded nats: cluster address %q: %w", o.Cluster.Listen, err)
		}
		opts.Cluster.Name, opts.Cluster.Host = o.Cluster.Name, h
		if opts.Cluster.Port, err = strconv.Atoi(p); err != nil {
			release()
			return nil, fmt.Errorf("embedded nats: cluster port %q: %w", p, err)
		}
		for _, r := range o.Cluster.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr("nats-route://"+r)...)
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		release()
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	full := &diskLog{}
	if sizeStore {
		s.SetLogger(full, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		release()
		return nil, fmt.Errorf("embedded nats: not ready after %s on %s", readyTimeout, o.Listen)
	}
	go func() { s.WaitForShutdown(); release() }()
	if sizeStore {
		go watchDisk(s, opts, o.StoreDir, o.DiskCheck, full)
	}
	return s, nil
}

// ErrDirInUse: the JetStream directory is in use by another running server (see Options.StoreDir).
var ErrDirInUse = errors.New("data directory in use")

// readyTimeout is how long Start waits for the server to take clients: a node of a cluster
// recovering its streams on a loaded machine took more than 10 s.
const readyTimeout = 30 * time.Second
