package embedded

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Why the embedded server sizes its own storage limit: left unset, nats-server sets it once, at
// start-up, to 75% of the disk's free space, and never again. A store whose disk filled up then
// refused every write until a restart, however much room was made meanwhile. Here the limit is
// set explicitly by the same rule (what the store holds plus 75% of what is free) and raised
// whenever the disk has more room (nats-server allows raising an explicit limit at run time).

// minFree is the room a disk needs before a JetStream stopped for want of it is started again.
const minFree = 8 << 20

// storeLimit is the storage limit for a store holding used bytes on a disk with free bytes.
func storeLimit(used, free int64) int64 { return used + free/4*3 }

// watchDisk raises the server's storage limit every interval while the disk under dir has more
// room, and restarts JetStream once there is room again after a write met a full disk, until the
// server shuts down. (A stream whose write failed for want of space refuses every write after it
// until it is loaded again; nats-server may also stop JetStream altogether.)
func watchDisk(s *server.Server, opts *server.Options, dir string, interval time.Duration, full *diskLog) {
	t := time.NewTicker(interval)
	defer t.Stop()
	done := make(chan struct{})
	go func() { s.WaitForShutdown(); close(done) }()
	var saved *server.JetStreamConfig // as it ran, to start it again the same way
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		free, ok := diskFree(dir)
		if !ok {
			continue
		}
		enabled := s.JetStreamEnabled()
		if c := s.JetStreamConfig(); enabled && c != nil {
			saved = c
		}
		if !enabled || full.ranOut.Load() {
			if free < minFree || saved == nil {
				continue
			}
			full.ranOut.Store(false)
			if enabled {
				_ = s.ShutdownJetStream()
			}
			c := *saved
			c.StoreDir, c.MaxStore = opts.StoreDir, storeLimit(dirSize(dir), free)
			if err := s.EnableJetStream(&c); err != nil {
				s.Warnf("shadowbridge: JetStream not restarted after the disk ran out: %v", err)
				full.ranOut.Store(true) // try again at the next check
			}
			continue
		}
		raiseLimit(s, &opts, dir, free)
	}
}

// raiseLimit raises the server's storage limit to what the disk allows now, if that is more.
func raiseLimit(s *server.Server, opts **server.Options, dir string, free int64) {
	v, err := s.Varz(&server.VarzOptions{})
	if err != nil || v.JetStream.Stats == nil {
		return // JetStream stopped since the caller looked (nats-server stops it on a disk error)
	}
	limit := storeLimit(int64(v.JetStream.Stats.Store), free)
	cur := (*opts).JetStreamMaxStore
	// Only upwards (nats-server refuses to lower it at run time), and not for crumbs.
	if limit <= cur+cur/100 {
		return
	}
	next := (*opts).Clone()
	next.JetStreamMaxStore = limit
	if err := s.ReloadOptions(next); err != nil {
		s.Warnf("shadowbridge: storage limit not raised to %d bytes: %v", limit, err)
		return
	}
	*opts = next
}

// diskLog is the embedded server's logger: it keeps nats-server quiet, as before, but notes a
// write that met a full disk, the one signal nats-server gives of a stream that will refuse
// every write until it is loaded again.
type diskLog struct{ ranOut atomic.Bool }

func (d *diskLog) Errorf(format string, v ...any) {
	if msg := fmt.Sprintf(format, v...); strings.Contains(msg, "no space left on device") || strings.Contains(msg, "critical write error") {
		d.ranOut.Store(true)
	}
}
func (*diskLog) Noticef(string, ...any) {}
func (*diskLog) Warnf(string, ...any)   {}
func (*diskLog) Fatalf(string, ...any)  {}
func (*diskLog) Debugf(string, ...any)  {}
func (*diskLog) Tracef(string, ...any)  {}

var _ server.Logger = (*diskLog)(nil)

// dirSize is what the files under dir hold (what a store recovered at start-up occupies).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
