package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"shadowbridge/domain"
	"shadowbridge/eventstore"
)

// VerifySource is what Verify reads: the log, the index, the armed timers and the dispatcher's
// position. *eventstore.Store is one; nothing is written.
type VerifySource interface {
	Replay(ctx context.Context, from uint64, fn func(*eventstore.Record) error) (uint64, error)
	Load(ctx context.Context, resource, shadowID string) (domain.Shadow, uint64, error)
	IndexEntries(ctx context.Context, fn func(eventstore.IndexEntry) error) error
	ArmedTimer(ctx context.Context, resource, shadowID string) (time.Time, bool, error)
	AckFloor(ctx context.Context, consumer string) (uint64, error)
}

var _ VerifySource = (*eventstore.Store)(nil)

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Full folds every shadow's events and compares them with every stored state; otherwise one
	// shadow in SampleEvery (default 16) is folded.
	Full        bool
	SampleEvery int
	// Consistency returns a resource's consistency settings (when timers are due); default
	// domain.DefaultConsistency().
	Consistency func(resource string) domain.Consistency
	// Dispatcher and TimerArmer are the durable consumers of the dispatcher and the timer armer
	// (default "PROV_DISPATCHER", "PROV_TIMER_ARMER").
	Dispatcher, TimerArmer string
	// Recheck is how long a finding that a running service could be about to fix (the
	// projection behind, a timer being armed) is given before it is reported (default 3s).
	Recheck time.Duration
	// Progress, when set, is called every 10,000 records with the records read and the last
	// sequence of the log.
	Progress func(read, last uint64)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Finding is one problem Verify found. A notice is a leftover that does no harm (a crash
// between the index write and the append leaves one; it is taken over or ignored); a
// violation breaks a guarantee.
type Finding struct {
	Check    string `json:"check"`
	Resource string `json:"resource,omitempty"`
	ShadowID string `json:"shadowId,omitempty"`
	Detail   string `json:"detail"`
	Notice   bool   `json:"notice,omitempty"`
}

func (f Finding) String() string {
	kind := "VIOLATION"
	if f.Notice {
		kind = "notice"
	}
	return fmt.Sprintf("%s [%s] %s %s: %s", kind, f.Check, f.Resource, f.ShadowID, f.Detail)
}

// VerifyReport is what Verify read and found.
type VerifyReport struct {
	Records      int       `json:"records"`
	Shadows      int       `json:"shadows"`
	Folded       int       `json:"folded"`
	Operations   int       `json:"operations"`
	IndexEntries int       `json:"indexEntries"`
	Claims       int       `json:"claims"`
	LastSeq      uint64    `json:"lastSeq"`
	Findings     []Finding `json:"findings"`
}

// MarshalJSON writes the report with its counts of violations and notices.
func (r VerifyReport) MarshalJSON() ([]byte, error) {
	type plain VerifyReport
	findings := r.Findings
	if findings == nil {
		findings = []Finding{}
	}
	p := plain(r)
	p.Findings = findings
	return json.Marshal(struct {
		plain
		Violations int `json:"violations"`
		Notices    int `json:"notices"`
	}{p, r.Violations(), len(r.Findings) - r.Violations()})
}

// Violations counts the findings that are not notices.
func (r VerifyReport) Violations() int {
	n := 0
	for _, f := range r.Findings {
		if !f.Notice {
			n++
		}
	}
	return n
}

type verifiedShadow struct {
	resource, id string
	last         domain.Shadow
	lastSeq      uint64
	ops          map[string]bool   // every operation id in its events
	dispatched   map[string]uint64 // operation -> seq of its last DispatchRequested
	postponed    map[string]uint64 // operation -> seq of its last OperationPostponed
	adds         int
	folded       *domain.Shadow
}

// Verify checks the provisioning log against everything derived from it, the way fsck checks a
// file system, reading only (it can run beside a live service):
//   - folding a shadow's events gives the state stored with each of its commits (Full, or a sample);
//   - the projection holds each shadow's last state (an expired shadow none);
//   - every operation of a shadow is in the operation index, pointing to it; an index entry of an
//     operation its shadow never had is a notice;
//   - every identifier a live shadow holds is claimed by it; a claim its holder does not hold is
//     a notice (stale);
//   - no two live shadows hold one identifier; no shadow was added twice; no request id has two
//     decisions;
//   - nothing unfinished is stuck: work due at a time has a timer armed at or before it, and an
//     operation released to the target was dispatched or is still ahead of the dispatcher.
//
// Findings a running service may be about to fix are checked again after Recheck; a shadow that
// keeps changing through maxRechecks looks is reported as a notice ("changing"), not dropped.
func Verify(ctx context.Context, src VerifySource, projection jetstream.KeyValue, o VerifyOptions) (VerifyReport, error) {
	v := &verifier{src: src, projection: projection, o: o.withDefaults(), shadows: map[string]*verifiedShadow{},
		requests: map[string]decided{}, indexed: map[string]string{}, claimed: map[string]string{}, refused: map[string]*eventstore.Refusal{}}
	last, err := src.Replay(ctx, 1, v.record)
	if err != nil {
		return v.rep, err
	}
	v.rep.LastSeq, v.rep.Shadows = last, len(v.shadows)
	v.checkIdentifiers()
	if err := src.IndexEntries(ctx, v.indexEntry); err != nil {
		return v.rep, err
	}
	v.checkRefusals()
	if v.dispatched, err = src.AckFloor(ctx, v.o.Dispatcher); err != nil {
		return v.rep, err
	}
	// Timers follow the log through the armer's consumer: a shadow whose last commit it has not
	// acknowledged yet is still to be armed, not missing a timer.
	if v.armed, err = src.AckFloor(ctx, v.o.TimerArmer); err != nil {
		return v.rep, err
	}
	return v.rep, v.checkShadows(ctx)
}

func (o VerifyOptions) withDefaults() VerifyOptions {
	if o.SampleEvery <= 0 {
		o.SampleEvery = 16
	}
	if o.Consistency == nil {
		o.Consistency = func(string) domain.Consistency { return domain.DefaultConsistency() }
	}
	if o.Dispatcher == "" {
		o.Dispatcher = "PROV_DISPATCHER"
	}
	if o.TimerArmer == "" {
		o.TimerArmer = "PROV_TIMER_ARMER"
	}
	if o.Recheck == 0 {
		o.Recheck = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// verifier is one run of Verify: what the replay of the log and the read of the index found.
type verifier struct {
	src        VerifySource
	projection jetstream.KeyValue
	o          VerifyOptions
	rep        VerifyReport
	shadows    map[string]*verifiedShadow     // "<resource>.<id>"
	requests   map[string]decided             // "<resource>\x00<request id>" -> its decision
	holders    map[string]string              // claim key -> the live shadow holding it (log)
	indexed    map[string]string              // operation -> "<resource>.<shadow>" (index)
	claimed    map[string]string              // claim key -> holder (index)
	refused    map[string]*eventstore.Refusal // request key -> its recorded refusal (index)
	dispatched uint64                         // the dispatcher's acknowledgement floor
	armed      uint64                         // the timer armer's acknowledgement floor
}

// decided is where a request id was decided.
type decided struct {
	seq    uint64
	shadow string
}

func (v *verifier) add(f Finding) { v.rep.Findings = append(v.rep.Findings, f) }

// shadow returns the shadow a record belongs to, starting it at its first record.
func (v *verifier) shadow(r *eventstore.Record) *verifiedShadow {
	key := r.Resource + "." + r.ShadowID
	vs := v.shadows[key]
	if vs == nil {
		vs = &verifiedShadow{resource: r.Resource, id: r.ShadowID, ops: map[string]bool{}, dispatched: map[string]uint64{}, postponed: map[string]uint64{}}
		if v.o.Full || sampled(r.ShadowID, v.o.SampleEvery) {
			vs.folded = &domain.Shadow{}
		}
		v.shadows[key] = vs
	}
	return vs
}

// record takes one record of the replay: what its events say, its request id, and (for a folded
// shadow) whether folding its events gives the state stored with it.
func (v *verifier) record(r *eventstore.Record) error {
	v.rep.Records++
	if v.o.Progress != nil && v.rep.Records%10000 == 0 {
		v.o.Progress(r.Seq, r.Seq)
	}
	vs := v.shadow(r)
	var st domain.Shadow
	events, err := r.Events()
	if err == nil {
		st, err = r.State()
	}
	if err != nil { // not ours (or this build's): skipped, as every reader skips it
		v.add(Finding{Check: "decode", Resource: r.Resource, ShadowID: r.ShadowID, Detail: fmt.Sprintf("%v (skipped: the shadow's state is its last good commit's)", err)})
		return nil
	}
	decision := v.events(r, vs, events)
	if rid, _ := r.RequestID(); rid != "" && decision {
		k := r.Resource + "\x00" + rid
		if first, dup := v.requests[k]; dup {
			v.add(Finding{Check: "request-once", Resource: r.Resource, ShadowID: r.ShadowID,
				Detail: fmt.Sprintf("request id %q decided twice (records %d and %d)", rid, first.seq, r.Seq)})
		} else {
			v.requests[k] = decided{r.Seq, r.ShadowID}
		}
	}
	if vs.folded != nil {
		next := domain.Fold(*vs.folded, events)
		vs.folded = &next
		v.rep.Folded++
		if !sameState(next, st) {
			v.add(Finding{Check: "fold", Resource: r.Resource, ShadowID: r.ShadowID,
				Detail: fmt.Sprintf("record %d: folding the events gives version %d, the stored state is version %d or differs", r.Seq, next.Version(), st.Version())})
			vs.folded = &st // report each divergence once
		}
	}
	vs.last, vs.lastSeq = st, r.Seq
	return nil
}

// events notes what a record's events say of its shadow and reports whether they decide a
// request (an add, a modify or a delete).
func (v *verifier) events(r *eventstore.Record, vs *verifiedShadow, events []domain.Event) (decision bool) {
	for _, e := range events {
		if id := domain.EventOperationID(e); id != "" {
			vs.ops[id] = true
		}
		switch x := e.(type) {
		case domain.AddRequested:
			vs.adds++
			decision = true
			if vs.adds == 2 {
				v.add(Finding{Check: "one-add", Resource: r.Resource, ShadowID: r.ShadowID, Detail: fmt.Sprintf("a second add at record %d", r.Seq)})
			}
		case domain.ModifyRequested, domain.DeleteRequested:
			decision = true
		case domain.DispatchRequested:
			vs.dispatched[x.OperationID] = r.Seq
		case domain.OperationPostponed:
			vs.postponed[x.OperationID] = r.Seq
		}
	}
	return decision
}

// checkIdentifiers: identifiers held by live shadows, each claimed by its holder, none held twice.
func (v *verifier) checkIdentifiers() {
	v.holders = map[string]string{}
	for _, vs := range v.shadows {
		v.rep.Operations += len(vs.ops)
		if !vs.last.Created() || vs.last.Dead() {
			continue
		}
		for _, c := range vs.last.Claims() {
			k := eventstore.ClaimKey(c)
			if other, dup := v.holders[k]; dup && c.Kind == domain.SecondaryIdentifier {
				v.add(Finding{Check: "unique-identifier", Resource: vs.resource, ShadowID: vs.id,
					Detail: fmt.Sprintf("%s=%v is also held by live shadow %s", c.Attribute, c.Value, other)})
			}
			v.holders[k] = vs.id
		}
	}
}

// indexEntry checks one entry of the index against the log.
func (v *verifier) indexEntry(e eventstore.IndexEntry) error {
	v.rep.IndexEntries++
	switch e.Kind {
	case "operation":
		v.indexed[e.OperationID] = e.Resource + "." + e.ShadowID
		vs := v.shadows[e.Resource+"."+e.ShadowID]
		if vs == nil || !vs.ops[e.OperationID] {
			v.add(Finding{Check: "operation-index", Resource: e.Resource, ShadowID: e.ShadowID, Notice: true,
				Detail: fmt.Sprintf("index entry of operation %s, which the shadow never had (a decision that was not stored)", e.OperationID)})
		}
	case "request":
		if e.Refusal != nil {
			v.refused[e.Key] = e.Refusal
		}
	case "claim":
		v.rep.Claims++
		v.claimed[e.Key] = e.Holder.ShadowID
		if v.holders[e.Key] != e.Holder.ShadowID {
			v.add(Finding{Check: "claim", Resource: e.Resource, ShadowID: e.Holder.ShadowID, Notice: true,
				Detail: fmt.Sprintf("claim %s is held by a shadow that does not hold the identifier (stale: taken over when needed)", e.Key)})
		}
	}
	return nil
}

// checkRefusals: a request id answered with a refusal must never have been decided as well.
func (v *verifier) checkRefusals() {
	for k, d := range v.requests {
		resource, rid, _ := strings.Cut(k, "\x00")
		if r := v.refused[eventstore.RequestKey(resource, rid)]; r != nil {
			v.add(Finding{Check: "request-once", Resource: resource, ShadowID: d.shadow,
				Detail: fmt.Sprintf("request id %q was answered with a refusal (%s: %s) and was also decided (record %d)", rid, r.Category, r.Message, d.seq)})
		}
	}
}

// checkShadows checks every shadow's last state against the projection, the index and its
// timer; what a running service could still be fixing is checked again before it is reported.
func (v *verifier) checkShadows(ctx context.Context) error {
	kvGet := func(key string) ([]byte, bool, error) {
		e, err := v.projection.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		return e.Value(), true, nil
	}
	check := func(vs *verifiedShadow, st domain.Shadow, kvValue []byte, kvFound bool) ([]Finding, error) {
		return v.checkShadow(ctx, vs, st, kvValue, kvFound)
	}
	var suspects []suspect
	for _, k := range slices.Sorted(maps.Keys(v.shadows)) {
		vs := v.shadows[k]
		value, found, err := kvGet(k)
		if err != nil {
			return err
		}
		find, err := check(vs, vs.last, value, found)
		if err != nil {
			return err
		}
		if len(find) > 0 {
			suspects = append(suspects, suspect{vs, find})
		}
	}
	more, err := recheck(ctx, v.src, v.o.Recheck, suspects, kvGet, check)
	v.rep.Findings = append(v.rep.Findings, more...)
	return err
}

// checkShadow returns what is wrong with one shadow in state st: its projection entry, its
// operations in the index, its identifiers' claims, its timer.
func (v *verifier) checkShadow(ctx context.Context, vs *verifiedShadow, st domain.Shadow, kvValue []byte, kvFound bool) ([]Finding, error) {
	var out []Finding
	f := func(check, detail string) {
		out = append(out, Finding{Check: check, Resource: vs.resource, ShadowID: vs.id, Detail: detail})
	}
	d := st.Data()
	switch {
	case d.Expired && kvFound:
		f("projection", "an expired shadow is still in the projection")
	case !d.Expired && st.Created() && !kvFound:
		f("projection", fmt.Sprintf("missing from the projection (version %d)", st.Version()))
	case !d.Expired && kvFound:
		var p domain.ShadowData
		if err := json.Unmarshal(kvValue, &p); err != nil {
			f("projection", fmt.Sprintf("undecodable: %v", err))
		} else if a, b := mustJSON(p), mustJSON(d); !bytes.Equal(a, b) {
			f("projection", fmt.Sprintf("differs from the last commit (projection version %d, log version %d)", p.Version, d.Version))
		}
	}
	for _, p := range d.PendingOperations {
		// An operation made after the replay is not judged against the index read after it.
		if got, ok := v.indexed[p.ID]; vs.ops[p.ID] && (!ok || got != vs.resource+"."+vs.id) {
			f("operation-index", fmt.Sprintf("operation %s is not in the index (a confirmation of it would not be found)", p.ID))
		}
		if p.ExecutionStatus == domain.StatusExecutionPending && p.AttemptNumber == 0 {
			seq := vs.dispatched[p.ID]
			if seq != 0 && seq <= v.dispatched && vs.postponed[p.ID] < seq {
				f("stuck", fmt.Sprintf("operation %s was released at record %d, the dispatcher is past it (%d), and no attempt is recorded", p.ID, seq, v.dispatched))
			}
		}
	}
	if st.Created() && !st.Dead() {
		for _, c := range st.Claims() {
			if c.Kind == domain.SecondaryIdentifier && v.claimed[eventstore.ClaimKey(c)] != vs.id {
				f("claim", fmt.Sprintf("%s=%v is not claimed by the shadow (another add of it would not be refused)", c.Attribute, c.Value))
			}
		}
	}
	if due, ok := domain.NextDue(st, v.o.Consistency(vs.resource)); ok && vs.lastSeq <= v.armed {
		at, armed, err := v.src.ArmedTimer(ctx, vs.resource, vs.id)
		if err != nil {
			return nil, err
		}
		if !armed || at.After(due.Add(time.Second)) {
			detail := fmt.Sprintf("work is due at %s and no timer is armed", due.UTC().Format(time.RFC3339))
			if armed {
				detail = fmt.Sprintf("work is due at %s but the timer is armed for %s", due.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
			}
			f("timer", detail)
		}
	}
	return out, nil
}

// suspect is a shadow with findings a running service could be about to fix.
type suspect struct {
	vs   *verifiedShadow
	find []Finding
}

// recheck looks at the suspects again after wait, with a fresh load, and returns what stays. One
// that moved on meanwhile is judged by its new state (and looked at again if that one has findings
// too); one that keeps moving for maxRechecks rounds is reported as such, never dropped.
func recheck(ctx context.Context, src VerifySource, wait time.Duration, suspects []suspect,
	kvGet func(string) ([]byte, bool, error), check func(*verifiedShadow, domain.Shadow, []byte, bool) ([]Finding, error)) ([]Finding, error) {
	var out []Finding
	for round := 1; len(suspects) > 0; round++ {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return out, ctx.Err()
		}
		var next []suspect
		for _, s := range suspects {
			st, seq, err := src.Load(ctx, s.vs.resource, s.vs.id)
			if err != nil {
				return out, err
			}
			moved := seq != s.vs.lastSeq
			if moved && round == maxRechecks {
				out = append(out, Finding{Check: "changing", Resource: s.vs.resource, ShadowID: s.vs.id, Notice: true,
					Detail: fmt.Sprintf("kept changing through %d rechecks (record %d now), with findings each time (%s): not judged; run verify again", maxRechecks, seq, s.find[0].Detail)})
				continue
			}
			s.vs.last, s.vs.lastSeq = st, seq
			v, found, err := kvGet(s.vs.resource + "." + s.vs.id)
			if err != nil {
				return out, err
			}
			again, err := check(s.vs, st, v, found)
			if err != nil {
				return out, err
			}
			switch {
			case moved && len(again) > 0:
				next = append(next, suspect{s.vs, again})
			case !moved:
				out = append(out, again...)
			}
		}
		suspects = next
	}
	return out, nil
}

// maxRechecks bounds the looks at a shadow that keeps changing under verify.
const maxRechecks = 3

// sampled picks one shadow in every n, the same ones on every run.
func sampled(id string, n int) bool {
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32()%uint32(n) == 0
}

func sameState(a, b domain.Shadow) bool { return bytes.Equal(mustJSON(a.Data()), mustJSON(b.Data())) }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
