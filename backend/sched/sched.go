// Package sched makes the interleaving of concurrent transactions a choice
// of the test: it wraps a backend driver (backend/mem, in practice) so that
// every driver call made by a tracked goroutine blocks until the scheduler
// releases it, and the scheduler releases one call at a time, only when
// every tracked goroutine is either blocked in a driver call or finished.
// Between two releases exactly one goroutine runs, so the run is a function
// of the sequence of choices, and a property-test library that draws the
// choices (rapid) can shrink an interleaving like any other value.
//
// # Usage
//
//	sc := sched.New(sched.Options{})
//	drv := sc.Wrap(mem.New())
//	s, _ := stm.Open(ctx, drv, stm.WithSweepInterval(0), ...) // no background work
//	// ... set up refs: calls made outside actors pass straight through ...
//	for i := range clients {
//		sc.Go(ctx, i, func(ctx context.Context) { /* Dosyncs with ctx */ })
//	}
//	err := sc.Run(func(n int) int { return rapid.IntRange(0, n-1).Draw(t, "next") })
//
// Go starts an actor (a goroutine, identified by a small int) and waits
// until it blocks in its first call or finishes, so actors start in a fixed
// order. The ctx an actor is given carries its identity; every driver call
// must be made with a ctx derived from it (the engine passes the Dosync's
// ctx down to every call), which is how the wrapper knows which actor is
// calling. Run repeatedly waits for quiescence and releases one pending
// call: the pending calls are sorted by actor, and choose(n) picks one of
// the n (choose is only called when n > 1); index 0, the lowest actor,
// is what a shrinker moves towards, so shrunk schedules are as serial as
// the failure allows. Run returns when every actor has finished.
//
// A driver call made while actors are live with a ctx that carries no actor
// (background work of the engine: a sweeper, a read-point batcher, a
// fan-out goroutine) makes Run fail: it would run outside the schedule.
// Such calls made while no actor is live (setting up refs, reading the
// result back) simply pass through.
//
// # What must hold for determinism
//
// The code under test must do nothing between two driver calls that
// depends on other goroutines or on time: it must not block on another
// actor (a mutex held across a driver call, a channel), not start
// goroutines that make driver calls, and not let wall time or randomness
// change which calls it makes. A goroutine that sleeps (a backoff) only
// delays quiescence; the scheduler waits for it, so sleeps cost time but
// not determinism, unless their length decides what the code does next.
// An actor that blocks on anything but a driver call never becomes
// quiescent: Run detects this after Options.StuckAfter and fails with a
// dump of all goroutines.
//
// The wrapper always implements backend.LocalClock, so the engine reads the
// clock on the calling goroutine instead of through a batching goroutine.
package sched

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/epochal/epochal/backend"
	"github.com/epochal/epochal/clock"
)

// Options configure a Scheduler.
type Options struct {
	// SplitReplies makes each call two scheduled events: the request (the
	// inner call is applied) and the reply (the caller continues). Other
	// actors may then run between a call taking effect and its caller
	// learning the result, as over a network.
	SplitReplies bool
	// MaxChoices bounds the steps chosen by Run's choose function; after
	// that Run releases the call that has waited longest (FIFO), which is
	// fair, so a run whose drawn schedule starves an actor (an unfair
	// schedule can livelock a retry loop) still ends. 0 means 2000.
	MaxChoices int
	// MaxSteps bounds the whole run; past it Run fails. 0 means 100000.
	MaxSteps int
	// StuckAfter is how long Run waits for quiescence before it decides
	// an actor is blocked on something other than a driver call and
	// fails. It is a failure detector, not a synchronisation: a correct
	// run never waits for it. 0 means 20s.
	StuckAfter time.Duration
}

// Step is one released event, as Run logs it.
type Step struct {
	Actor  int
	Seq    int    // the actor's call number, from 0
	Op     string // the driver method
	Reply  bool   // the reply of a call (Options.SplitReplies)
	Choice int    // the index chosen among Of pending events
	Of     int
	Fair   bool // chosen by the FIFO fallback, not by choose
}

func (s Step) String() string {
	r := ""
	if s.Reply {
		r = "<-"
	}
	f := ""
	if s.Fair {
		f = " fifo"
	}
	return fmt.Sprintf("a%d#%d %s%s [%d/%d%s]", s.Actor, s.Seq, r, s.Op, s.Choice, s.Of, f)
}

// Scheduler decides the order of the driver calls of its actors. Create
// it with New; it runs one set of actors at a time.
type Scheduler struct {
	opts Options

	mu      sync.Mutex
	cond    *sync.Cond
	actors  map[int]*actor // live ones
	running int            // live actors not blocked in a call
	pending []*event
	stamp   int // orders events by when they became pending
	steps   []Step
	choices int
	errs    []error
	aborted bool // after a failure: every call passes unscheduled
}

type actor struct {
	s      *Scheduler
	id     int
	seq    int  // calls made so far
	inCall bool // from a call's start to its return
}

type event struct {
	a        *actor
	seq      int
	op       string
	reply    bool
	stamp    int
	released bool
}

type actorKey struct{}

// New returns a Scheduler with no actors.
func New(opts Options) *Scheduler {
	if opts.MaxChoices <= 0 {
		opts.MaxChoices = 2000
	}
	if opts.MaxSteps <= 0 {
		opts.MaxSteps = 100000
	}
	if opts.StuckAfter <= 0 {
		opts.StuckAfter = 20 * time.Second
	}
	s := &Scheduler{opts: opts, actors: map[int]*actor{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Go starts f on a new goroutine as actor id, with a ctx derived from ctx
// that identifies it, and returns once the actor is blocked in its first
// driver call or has finished. ids must be distinct among live actors.
func (s *Scheduler) Go(ctx context.Context, id int, f func(ctx context.Context)) {
	s.mu.Lock()
	if _, dup := s.actors[id]; dup {
		s.failLocked(fmt.Errorf("sched: actor %d started twice", id))
		s.mu.Unlock()
		return
	}
	a := &actor{s: s, id: id}
	s.actors[id] = a
	s.running++
	s.mu.Unlock()
	go func() {
		defer s.exit(a)
		f(context.WithValue(ctx, actorKey{}, a))
	}()
	s.mu.Lock()
	s.waitQuietLocked()
	s.mu.Unlock()
}

func (s *Scheduler) exit(a *actor) {
	s.mu.Lock()
	delete(s.actors, a.id)
	s.running--
	s.cond.Broadcast()
	s.mu.Unlock()
}

// waitLocked waits until done() holds, or until StuckAfter passes without
// it (a failure detector: a correct run never waits that long); it reports
// whether done() holds. The caller holds s.mu.
func (s *Scheduler) waitLocked(done func() bool) bool {
	if done() {
		return true
	}
	stuck := false
	t := time.AfterFunc(s.opts.StuckAfter, func() {
		s.mu.Lock()
		stuck = true
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer t.Stop()
	for !done() && !stuck {
		s.cond.Wait()
	}
	return done()
}

// waitQuietLocked waits until no actor runs; it fails the run if one runs
// for StuckAfter without making a call. The caller holds s.mu.
func (s *Scheduler) waitQuietLocked() {
	if s.waitLocked(func() bool { return s.running == 0 || s.aborted }) {
		return
	}
	var ids []int
	for id := range s.actors {
		if !s.blockedLocked(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	s.failLocked(fmt.Errorf("sched: actors %v ran for %v without making a driver call or finishing: blocked on something else (a lock, a channel, a goroutine)\n%s",
		ids, s.opts.StuckAfter, buf))
}

func (s *Scheduler) blockedLocked(id int) bool {
	for _, e := range s.pending {
		if e.a.id == id {
			return true
		}
	}
	return false
}

// failLocked records err and lets every call through from now on, so the
// actors can finish and the test report the failure.
func (s *Scheduler) failLocked(err error) {
	s.errs = append(s.errs, err)
	if !s.aborted {
		s.aborted = true
		s.cond.Broadcast()
	}
}

// Run releases pending calls one at a time until every actor has finished,
// as described in the package comment. choose(n) returns an index in
// [0, n); it is called on Run's goroutine (a rapid.T may draw in it). If
// it panics, Run lets the actors finish unscheduled and panics with the
// same value. Run returns the errors recorded (untracked calls, stuck actors, a bad
// choice, too many steps), joined.
func (s *Scheduler) Run(choose func(n int) int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.waitQuietLocked()
		if s.aborted {
			// Let the actors finish unscheduled, then report.
			if !s.waitLocked(func() bool { return len(s.actors) == 0 }) {
				s.errs = append(s.errs, fmt.Errorf("sched: %d actor(s) still had not finished %v after the failure", len(s.actors), s.opts.StuckAfter))
			}
			return errors.Join(s.errs...)
		}
		if len(s.pending) == 0 {
			return errors.Join(s.errs...) // running == 0: every actor finished
		}
		if len(s.steps) >= s.opts.MaxSteps {
			s.failLocked(fmt.Errorf("sched: more than %d steps", s.opts.MaxSteps))
			continue
		}
		slices.SortFunc(s.pending, func(x, y *event) int { return cmp.Compare(x.a.id, y.a.id) })
		n, i, fair := len(s.pending), 0, false
		switch {
		case n == 1:
		case s.choices < s.opts.MaxChoices:
			s.choices++
			s.mu.Unlock()
			var v any
			i, v = callChoose(choose, n)
			s.mu.Lock()
			if v != nil {
				// choose gave up (a rapid.T stops a case by panicking):
				// let the actors finish unscheduled, then pass it on.
				s.failLocked(fmt.Errorf("sched: choose panicked: %v", v))
				s.waitLocked(func() bool { return len(s.actors) == 0 })
				panic(v)
			}
			if i < 0 || i >= n {
				s.failLocked(fmt.Errorf("sched: choose(%d) returned %d", n, i))
				continue
			}
		default:
			fair = true
			for j, e := range s.pending {
				if e.stamp < s.pending[i].stamp {
					i = j
				}
			}
		}
		e := s.pending[i]
		s.pending = slices.Delete(s.pending, i, i+1)
		s.steps = append(s.steps, Step{Actor: e.a.id, Seq: e.seq, Op: e.op, Reply: e.reply, Choice: i, Of: n, Fair: fair})
		e.released = true
		s.running++
		s.cond.Broadcast()
	}
}

// callChoose calls choose, returning what it panicked with, if anything.
func callChoose(choose func(n int) int, n int) (i int, panicked any) {
	defer func() {
		if v := recover(); v != nil {
			panicked = v
		}
	}()
	return choose(n), nil
}

// Steps returns the events released so far, in order.
func (s *Scheduler) Steps() []Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.steps)
}

// Schedule renders Steps one per line, for failure messages and for
// comparing two runs.
func (s *Scheduler) Schedule() string {
	var b strings.Builder
	for i, st := range s.Steps() {
		fmt.Fprintf(&b, "%4d %s\n", i, st)
	}
	return b.String()
}

// wait blocks an actor's call (or its reply) until Run releases it.
func (s *Scheduler) wait(a *actor, op string, reply bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		return
	}
	seq := a.seq
	if reply {
		seq--
	} else {
		if a.inCall {
			// Two goroutines call with one actor's ctx (a fan-out): the
			// count of running actors is wrong from here on. (Caught
			// only if the calls overlap.)
			s.failLocked(fmt.Errorf("sched: actor %d made a call (%s) while in another: driver calls on goroutines the test did not start", a.id, op))
			return
		}
		a.inCall = true
		a.seq++
	}
	e := &event{a: a, seq: seq, op: op, reply: reply, stamp: s.stamp}
	s.stamp++
	s.pending = append(s.pending, e)
	s.running--
	s.cond.Broadcast()
	for !e.released && !s.aborted {
		s.cond.Wait()
	}
	if !e.released { // aborted: it is running again, unscheduled
		s.pending = slices.DeleteFunc(s.pending, func(x *event) bool { return x == e })
		s.running++
	}
}

// do runs one driver call under the schedule.
func (s *Scheduler) do(ctx context.Context, op string, f func()) {
	a, _ := ctx.Value(actorKey{}).(*actor)
	if a == nil || a.s != s {
		s.mu.Lock()
		if len(s.actors) > 0 && !s.aborted {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.failLocked(fmt.Errorf("sched: %s called while actors run, by a goroutine that is not one (background work outside the schedule):\n%s", op, buf))
		}
		s.mu.Unlock()
		f()
		return
	}
	s.wait(a, op, false)
	f()
	if s.opts.SplitReplies {
		s.wait(a, op, true)
	}
	s.mu.Lock()
	a.inCall = false
	s.mu.Unlock()
}

// Wrap returns inner with its calls scheduled by s. The result implements
// backend.OnePhase if inner does, and always backend.LocalClock and
// backend.ValueLimit.
func (s *Scheduler) Wrap(inner backend.Driver) backend.Driver {
	d := &Driver{s: s, inner: inner}
	if op, ok := inner.(backend.OnePhase); ok {
		return &OnePhaseDriver{Driver: d, op: op}
	}
	return d
}

// Driver is a driver whose calls a Scheduler orders.
type Driver struct {
	s     *Scheduler
	inner backend.Driver
}

// OnePhaseDriver is a Driver whose inner driver has the fast path.
type OnePhaseDriver struct {
	*Driver
	op backend.OnePhase
}

var (
	_ backend.Driver     = (*Driver)(nil)
	_ backend.LocalClock = (*Driver)(nil)
	_ backend.ValueLimit = (*Driver)(nil)
	_ backend.OnePhase   = (*OnePhaseDriver)(nil)
)

// LocalClock: the engine must read points on the calling goroutine.
func (d *Driver) LocalClock() {}

// MaxValueSize is the inner driver's limit, if it has one.
func (d *Driver) MaxValueSize() int {
	if l, ok := d.inner.(backend.ValueLimit); ok {
		return l.MaxValueSize()
	}
	return math.MaxInt
}

// ID is the inner driver's.
func (d *Driver) ID() string { return d.inner.ID() }

// Close closes the inner driver, unscheduled.
func (d *Driver) Close() error { return d.inner.Close() }

func (d *Driver) ReadPoint(ctx context.Context) (p clock.Point, err error) {
	d.s.do(ctx, "ReadPoint", func() { p, err = d.inner.ReadPoint(ctx) })
	return
}

func (d *Driver) PutRecord(ctx context.Context, r backend.Record) (ok bool, err error) {
	d.s.do(ctx, "PutRecord", func() { ok, err = d.inner.PutRecord(ctx, r) })
	return
}

func (d *Driver) CommitRecord(ctx context.Context, id string) (r backend.Record, err error) {
	d.s.do(ctx, "CommitRecord", func() { r, err = d.inner.CommitRecord(ctx, id) })
	return
}

func (d *Driver) AbortRecord(ctx context.Context, id string) (r backend.Record, err error) {
	d.s.do(ctx, "AbortRecord", func() { r, err = d.inner.AbortRecord(ctx, id) })
	return
}

func (d *Driver) Records(ctx context.Context, ids []string) (rs []backend.Record, err error) {
	d.s.do(ctx, "Records", func() { rs, err = d.inner.Records(ctx, ids) })
	return
}

func (d *Driver) ListRecords(ctx context.Context) (rs []backend.Record, err error) {
	d.s.do(ctx, "ListRecords", func() { rs, err = d.inner.ListRecords(ctx) })
	return
}

func (d *Driver) DeleteRecord(ctx context.Context, id string, keep time.Duration) (err error) {
	d.s.do(ctx, "DeleteRecord", func() { err = d.inner.DeleteRecord(ctx, id, keep) })
	return
}

func (d *Driver) Create(ctx context.Context, req backend.CreateRequest) (r backend.CreateResult, err error) {
	d.s.do(ctx, "Create", func() { r, err = d.inner.Create(ctx, req) })
	return
}

func (d *Driver) Read(ctx context.Context, req backend.ReadRequest) (r backend.ReadResult, err error) {
	d.s.do(ctx, "Read", func() { r, err = d.inner.Read(ctx, req) })
	return
}

func (d *Driver) Versions(ctx context.Context, name string) (r backend.VersionsResult, err error) {
	d.s.do(ctx, "Versions", func() { r, err = d.inner.Versions(ctx, name) })
	return
}

func (d *Driver) List(ctx context.Context, prefix string) (r []backend.RefInfo, err error) {
	d.s.do(ctx, "List", func() { r, err = d.inner.List(ctx, prefix) })
	return
}

func (d *Driver) Lock(ctx context.Context, req backend.LockRequest) (r backend.LockResult, err error) {
	d.s.do(ctx, "Lock", func() { r, err = d.inner.Lock(ctx, req) })
	return
}

func (d *Driver) Stage(ctx context.Context, txn string, items []backend.StageItem) (ok bool, err error) {
	d.s.do(ctx, "Stage", func() { ok, err = d.inner.Stage(ctx, txn, items) })
	return
}

func (d *Driver) Resolve(ctx context.Context, req backend.ResolveRequest) (err error) {
	d.s.do(ctx, "Resolve", func() { err = d.inner.Resolve(ctx, req) })
	return
}

func (d *Driver) Meta(ctx context.Context, name string) (m []byte, v uint64, err error) {
	d.s.do(ctx, "Meta", func() { m, v, err = d.inner.Meta(ctx, name) })
	return
}

func (d *Driver) SetMeta(ctx context.Context, name string, expect uint64, meta []byte) (ok bool, err error) {
	d.s.do(ctx, "SetMeta", func() { ok, err = d.inner.SetMeta(ctx, name, expect, meta) })
	return
}

// Subscribe is scheduled; the hints the subscription delivers later are
// not (nothing waits for them under a schedule).
func (d *Driver) Subscribe(ctx context.Context, name string) (sub backend.Subscription, err error) {
	d.s.do(ctx, "Subscribe", func() { sub, err = d.inner.Subscribe(ctx, name) })
	return
}

// CommitOnePhase runs the inner driver's fast path.
func (d *OnePhaseDriver) CommitOnePhase(ctx context.Context, req backend.OnePhaseRequest) (r backend.OnePhaseResult, err error) {
	d.s.do(ctx, "CommitOnePhase", func() { r, err = d.op.CommitOnePhase(ctx, req) })
	return
}
