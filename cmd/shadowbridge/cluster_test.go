package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/bridge/amqptest"
	"shadowbridge/eventstore/natstest"
)

// term stops the process with SIGTERM and returns how long it took to exit (it is started
// again by run, not by the supervisor).
func (p *proc) term(within time.Duration) (time.Duration, error) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return 0, nil
	}
	start := time.Now()
	p.stderr.mark()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			return time.Since(start), fmt.Errorf("exit code %d after SIGTERM:\n%s", code, p.stderr.why())
		}
		return time.Since(start), nil
	case <-time.After(within):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return time.Since(start), fmt.Errorf("still running %s after SIGTERM:\n%s", within, p.stderr.why())
	}
}

// streamLeader returns the name of the node leading PROV_EVENTS ("" while there is none).
func streamLeader(ctx context.Context, js jetstream.JetStream) string {
	// Short: while there is no leader the request waits out its timeout.
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	s, err := js.Stream(ctx, "PROV_EVENTS")
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// Three `serve` instances on a 3-node JetStream cluster (R3 stream and buckets), open-loop load
// through Artemis to a target system, and in turn: the stream's leader node SIGKILLed and
// restarted, one instance SIGKILLed and restarted, a rolling restart of all three with SIGTERM.
// Nothing acknowledged may be lost or decided twice, every account ends with its last change,
// verify is clean, and a graceful stop ends within its bound with exit code 0. The suite runs
// 45 s; `task cluster-faults` longer (SHADOWBRIDGE_CLUSTER_SECONDS).
func TestClusterScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes of a 3-node cluster")
	}
	d := time.Duration(envInt("SHADOWBRIDGE_CLUSTER_SECONDS", 45)) * time.Second
	br := amqptest.Start(t)
	requests, confirmations := br.Queue(t, "cluster-requests"), br.Queue(t, "cluster-confirmations")
	plan := natstest.ClusterPlan(t, 3)
	nodes := make([]*proc, len(plan))
	for i, n := range plan {
		nodes[i] = natsNode(t, n.Options())
		nodes[i].run()
	}
	natstest.WaitClusterReady(t, natstest.URLs(plan))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sc := newScenario(ctx, t, natstest.URLs(plan), br.URL, br.URL, requests, confirmations, 3)
	instances := []*proc{sc.serve(), sc.serve(), sc.serve()}
	for _, p := range instances {
		p.run()
	}
	js, _ := jetstream.New(sc.nc)
	rep := soakReport{Seconds: int(d.Seconds()), Faults: map[string]int{}}
	var recovery, slowestStop time.Duration
	loadCtx, stopLoad := context.WithTimeout(ctx, d)
	defer stopLoad()
	phases := make(chan struct{})
	go func() {
		defer close(phases)
		pause := func(f time.Duration) bool {
			select {
			case <-loadCtx.Done():
				return false
			case <-time.After(f):
				return true
			}
		}
		// 1. The stream leader's node dies and comes back.
		if !pause(d / 6) {
			return
		}
		leader := streamLeader(ctx, js)
		for i, n := range plan {
			if n.Name == leader {
				killed := time.Now()
				nodes[i].kill()
				rep.Faults["kill-stream-leader"]++
				for time.Since(killed) < 30*time.Second {
					if l := streamLeader(ctx, js); l != "" && l != leader {
						recovery = time.Since(killed)
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				pause(3 * time.Second)
				nodes[i].run()
			}
		}
		// 2. An instance dies; its unacknowledged work goes to the others, then it comes back.
		if !pause(d / 6) {
			return
		}
		instances[0].kill()
		rep.Faults["kill-instance"]++
		pause(2 * time.Second)
		instances[0].run()
		// 3. A rolling restart with SIGTERM.
		if !pause(d / 6) {
			return
		}
		for _, p := range instances {
			took, err := p.term(shutdownGrace + 5*time.Second)
			if err != nil {
				t.Errorf("graceful stop: %v", err)
			}
			slowestStop = max(slowestStop, took)
			rep.Faults["rolling-restart"]++
			p.run()
			pause(3 * time.Second)
		}
	}()
	sc.load(loadCtx, float64(envInt("SHADOWBRIDGE_CLUSTER_RATE", 10)))
	<-phases
	sc.finish(ctx, &rep)
	t.Logf("cluster %v; new stream leader after %s; slowest graceful stop %s", rep, recovery.Round(time.Millisecond), slowestStop.Round(time.Millisecond))
	fmt.Fprintf(os.Stderr, "cluster %v; new stream leader after %s; slowest graceful stop %s\n", rep, recovery.Round(time.Millisecond), slowestStop.Round(time.Millisecond))
	if rep.Faults["kill-stream-leader"] != 1 || rep.Faults["kill-instance"] != 1 || rep.Faults["rolling-restart"] != 3 {
		t.Errorf("not every fault happened: %v", rep.Faults)
	}
	if rep.Shadows == 0 || rep.Lost+rep.Duplicates+rep.Held+rep.Mismatches+rep.TwoAnswers+rep.Violations != 0 {
		t.Fatalf("%v", rep)
	}
}
